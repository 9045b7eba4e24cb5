"""The account pool (config/accounts.py, workers/accounts.py): configuration errors named by
field and never showing a key; a job submitted through whichever account can take it, on a
real Redis and the simulator over HTTP with several keys; its polls through its own account;
gated accounts skipped; the pump's budget summed over the accounts that take submissions."""

from __future__ import annotations

import json
import os
import random
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from backbeat.config.settings import Settings
from backbeat.provider.profiles import Outcome
from backbeat.simulator import SimConfig, SimServer
from backbeat.tasks.credits import lease_key, read_credits
from backbeat.workers.accounts import choose, pick, weighted_order
from backbeat.workers.keys import account_id
from backbeat.workers.limiter import Kind
from backbeat.workers.pump import wake_budget
from backbeat.workers.reconcile import run_cycle
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState
from backbeat.workers.status import limiter_status, metrics_text
from backbeat.workers.submission import submit_job

PREFIX = "ac"
KEY_A = "sk-acct-alpha-000000000-aaaa"
KEY_B = "sk-acct-bravo-111111111-bbbb"
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "tags": "rock", "negativeTags": "metal"}


def accounts_env(*entries: dict) -> dict[str, str]:
    return {"BACKBEAT_ACCOUNTS": json.dumps(list(entries))}


def settings(**env: str) -> Settings:
    return Settings.from_env({"BACKBEAT_KEY_PREFIX": PREFIX, **env})


# -- configuration ------------------------------------------------------------------------

def test_one_api_key_is_one_account_named_default_with_the_same_limiter_keys():
    """BACKBEAT_API_KEY alone: one account ``default`` whose id (the limiter keys' name) is
    what it was before accounts existed, so an upgrade keeps its windows and breaker."""
    s = settings(BACKBEAT_API_KEY=KEY_A, BACKBEAT_PROVIDER="kie")
    (spec,) = s.account_specs
    assert spec.name == "default" and spec.provider.name == "kie"
    assert spec.base_url == s.api_base_url and spec.submit_rate == s.submit_rate
    rt = Runtime(s)
    assert rt.account == account_id("kie", KEY_A) and rt.primary.name == "default"


def test_omitted_fields_fall_back_to_the_single_account_variables():
    s = settings(BACKBEAT_PROVIDER="sunoapi", BACKBEAT_API_BASE_URL="http://127.0.0.1:9/",
                 BACKBEAT_SUBMIT_RATE="7/3s", BACKBEAT_CREDIT_FLOOR="50",
                 **accounts_env({"name": "a", "api_key": KEY_A},
                                {"name": "b", "api_key": KEY_B, "provider": "kie",
                                 "submit_rate": "5/1s", "weight": 2, "credit_floor": 0}))
    a, b = s.account_specs
    assert (a.provider.name, a.base_url, str(a.submit_rate), a.weight, a.credit_floor) == (
        "sunoapi", "http://127.0.0.1:9", "7/3s", 1.0, 50.0)
    # another provider than BACKBEAT_PROVIDER: its own official URL, not the other's
    assert (b.provider.name, b.base_url, str(b.submit_rate), b.weight, b.credit_floor) == (
        "kie", b.provider.base_url.rstrip("/"), "5/1s", 2.0, 0.0)
    assert KEY_A not in repr(s) and KEY_B not in repr(s.account_specs)


@pytest.mark.parametrize(("entries", "message"), [
    ('{"name": "a"}', "BACKBEAT_ACCOUNTS: must be a non-empty JSON list"),
    ("[]", "BACKBEAT_ACCOUNTS: must be a non-empty JSON list"),
    ("[1]", "BACKBEAT_ACCOUNTS[0]: must be a JSON object"),
    ('[{"api_key": "K1"}]', "BACKBEAT_ACCOUNTS[0].name: required"),
    ('[{"name": "a b", "api_key": "K1"}]', "BACKBEAT_ACCOUNTS[0].name: required"),
    ('[{"name": "a"}]', "BACKBEAT_ACCOUNTS[0].api_key: required"),
    ('[{"name": "a", "api_key": "K1"}, {"name": "a", "api_key": "K2"}]',
     "BACKBEAT_ACCOUNTS[1].name: 'a' is named twice"),
    ('[{"name": "a", "api_key": "K1"}, {"name": "b", "api_key": "K1"}]',
     "BACKBEAT_ACCOUNTS[1].api_key: the same key as an earlier account"),
    ('[{"name": "a", "api_key": "K1", "provider": "acme"}]',
     "BACKBEAT_ACCOUNTS[0].provider: unknown provider 'acme'"),
    ('[{"name": "a", "api_key": "K1", "base_url": "ftp://x"}]',
     "BACKBEAT_ACCOUNTS[0].base_url: must be an http(s) URL"),
    ('[{"name": "a", "api_key": "K1", "submit_rate": "lots"}]',
     "BACKBEAT_ACCOUNTS[0].submit_rate: rate 'lots' is not of the form N/Ws"),
    ('[{"name": "a", "api_key": "K1", "submit_burst": 1.5}]',
     "BACKBEAT_ACCOUNTS[0].submit_burst: must be an integer of at least 1"),
    ('[{"name": "a", "api_key": "K1", "weight": -1}]',
     "BACKBEAT_ACCOUNTS[0].weight: must be a number of at least 0"),
    ('[{"name": "a", "api_key": "K1", "weight": true}]',
     "BACKBEAT_ACCOUNTS[0].weight: must be a number of at least 0"),
    ('[{"name": "a", "api_key": "K1", "weight": 0}]',
     "BACKBEAT_ACCOUNTS: every account has weight 0"),
    ('[{"name": "a", "api_key": "K1", "apikey": "K2"}]',
     "BACKBEAT_ACCOUNTS[0]: unknown field(s) apikey"),
    ("[{'name': 'a'}]", "BACKBEAT_ACCOUNTS: not valid JSON"),
])
def test_a_bad_entry_fails_at_start_naming_the_field_never_the_key(entries, message):
    with pytest.raises(ValueError) as err:
        settings(**{"BACKBEAT_ACCOUNTS": entries})
    assert str(err.value).startswith(message), str(err.value)
    assert "K1" not in str(err.value) and "K2" not in str(err.value)


def test_the_accounts_file_is_read_and_the_variable_wins(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps([{"name": "from-file", "api_key": KEY_A}]))
    assert [a.name for a in settings(BACKBEAT_ACCOUNTS_FILE=str(path)).account_specs] == [
        "from-file"]
    both = settings(BACKBEAT_ACCOUNTS_FILE=str(path),
                    **accounts_env({"name": "from-env", "api_key": KEY_B}))
    assert [a.name for a in both.account_specs] == ["from-env"]
    with pytest.raises(ValueError, match=r"^BACKBEAT_ACCOUNTS_FILE: cannot read"):
        settings(BACKBEAT_ACCOUNTS_FILE=str(tmp_path / "missing.json"))
    path.write_text("[{")
    with pytest.raises(ValueError, match=r"^BACKBEAT_ACCOUNTS_FILE: not valid JSON"):
        settings(BACKBEAT_ACCOUNTS_FILE=str(path))


def test_weighted_order_puts_an_account_first_in_proportion_to_its_weight_and_skips_zero():
    rt = Runtime(settings(**accounts_env({"name": "heavy", "api_key": KEY_A, "weight": 3},
                                         {"name": "light", "api_key": KEY_B, "weight": 1},
                                         {"name": "drain", "api_key": "K3", "weight": 0})))
    rng = random.Random(7)
    firsts = Counter(weighted_order(rt.accounts, rng)[0].name for _ in range(4000))
    assert set(firsts) == {"heavy", "light"}  # the draining account is never tried
    assert 0.72 <= firsts["heavy"] / 4000 <= 0.78
    assert [a.name for a in pick(rt.accounts, "light")] == ["light"]
    assert len(pick(rt.accounts, None)) == 3
    with pytest.raises(ValueError, match="no account named 'nope' .configured: heavy, light"):
        pick(rt.accounts, "nope")


# -- on a real Redis ----------------------------------------------------------------------

@pytest.fixture
def make_rt(redis):
    """``make_rt(*entries, **env)``: a Runtime with those accounts under a prefix of its own
    (PREFIX and a number; every key of them removed first)."""
    for key in redis.scan_iter(f"{PREFIX}*:*", count=1000):
        redis.delete(key)
    made = iter(range(100))

    def make(*entries: dict, **env: str) -> Runtime:
        # a prefix per Runtime: a limiter state deleted under a live process reads as lost
        # data (fenced for a window), so no two Runtimes here share one
        prefix = f"{PREFIX}{next(made)}"
        return Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": prefix,
                                          **accounts_env(*entries), **env}))

    return make


def two(rate: str = "3/60s", **extra) -> tuple[dict, dict]:
    """Accounts a and b of ``rate`` each, every call of the window allowed back to back."""
    burst = int(rate.split("/")[0])
    return ({"name": "a", "api_key": KEY_A, "submit_rate": rate, "submit_burst": burst,
             **extra},
            {"name": "b", "api_key": KEY_B, "submit_rate": rate, "submit_burst": burst,
             **extra})


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"choose slept {seconds} s")


def test_grants_come_from_whichever_account_has_room_and_a_gated_one_is_skipped(make_rt):
    rt = make_rt(*two())
    a, b = rt.accounts
    got = Counter(choose(rt.accounts, 0, no_sleep).account.name for _ in range(6))
    assert got == {"a": 3, "b": 3}  # both windows full: 6 = 2 accounts x 3
    refused = choose(rt.accounts, 0, no_sleep)
    assert refused.account is None and refused.grant.kind is Kind.WINDOW
    assert refused.grant.wait_s > 50  # the soonest window, not a pause

    rt = make_rt(*two())
    a, b = rt.accounts
    a.submit.pause("manual")
    assert {choose(rt.accounts, 0, no_sleep).account.name for _ in range(3)} == {"b"}
    b.submit.pause("manual")
    gated = choose(rt.accounts, 60, no_sleep)  # every account paused: at once, no sleep
    assert gated.account is None and gated.grant.kind is Kind.PAUSED

    rt = make_rt(*two())
    a, b = rt.accounts
    a.submit.report(Outcome.MAINTENANCE)  # a 455: a's breaker opens
    assert {choose(rt.accounts, 0, no_sleep).account.name for _ in range(3)} == {"b"}
    refused = choose(rt.accounts, 0, no_sleep)
    assert refused.account is None and refused.grant.kind in (Kind.WINDOW, Kind.BREAKER)


def test_the_pump_budget_is_the_sum_over_accounts_that_take_submissions(make_rt):
    rt = make_rt(*two("20/10s"), {"name": "c", "api_key": "K3", "submit_rate": "20/10s",
                                 "weight": 0})
    a, b, _ = rt.accounts
    assert wake_budget(rt) == 40  # the draining account adds nothing
    a.submit.pause("manual")
    assert wake_budget(rt) == 20
    b.submit.report(Outcome.MAINTENANCE)
    assert wake_budget(rt) == 0


# -- through the simulator over HTTP ------------------------------------------------------

@pytest.fixture
def pool_sim():
    """A sunoapi simulator on a free port that accepts KEY_A and KEY_B, each with its own
    window of 3 calls per 60 s; no callbacks (jobs finish by polling)."""
    server = SimServer(SimConfig(profile="sunoapi", port=0, api_key=KEY_A, api_keys=(KEY_B,),
                                 rate_limit=3, rate_window_s=60, callbacks_enabled=False,
                                 text_after_s=0, first_after_s=0, complete_after_s=0)).start()
    yield server
    server.stop()


def stats(sim) -> dict:
    return requests.get(f"{sim.url}/__stats", timeout=10).json()


def test_jobs_go_through_both_keys_and_each_is_polled_through_its_own(make_rt, pool_sim):
    """Given two accounts of 3 calls per 60 s on one simulator, 7 jobs: 6 accepted, 3 per key
    (no key over its window), each job naming the account that accepted it; the 7th parked
    (both windows full). Then every submitted job is polled through its own key: none is
    asked of a key that did not create it, and all succeed."""
    rt = make_rt(*({**e, "base_url": pool_sim.url} for e in two()),
                 BACKBEAT_POLL_MIN_DELAY="0")
    ids = [rt.store.create(f"acj{n}", "add-instrumental", {**PARAMS, "title": f"acct {n}"})[0].id
           for n in range(7)]
    steps = [submit_job(rt, job_id).reason for job_id in ids]
    assert steps == ["submitted"] * 6 + ["parked (window)"], steps
    doc = stats(pool_sim)
    assert {k: (v["accepted"], v["max_accepted_in_window"]) for k, v in doc["by_key"].items()} \
        == {"...aaaa": (3, 3), "...bbbb": (3, 3)}
    by_key = {c["taskId"]: c["key"] for c in requests.get(
        f"{pool_sim.url}/__calls", timeout=10).json() if c.get("taskId")}
    for job in rt.store.get_many(ids[:6]):
        assert {"a": "...aaaa", "b": "...bbbb"}[job.get("account")] == by_key[
            job.upstream_task_id]
        assert job.to_public()["account"] == job.get("account")
    assert rt.store.get(ids[6]).state is JobState.QUEUED
    rt.redis.zadd(rt.keys.poll, dict.fromkeys(ids[:6], 0))  # every one due now
    report = run_cycle(rt)
    assert report.polled == 6 and report.moved == 6, report
    doc = stats(pool_sim)
    assert doc["polls_other_key"] == 0 and doc["polls"] == 6
    assert [j.state for j in rt.store.get_many(ids[:6])] == [JobState.SUCCEEDED] * 6


def test_a_maintenance_answer_moves_the_job_to_the_other_account_at_once(make_rt):
    """Two providers in one pool (a kie account and a sunoapi account, each on its own
    simulator): while kie answers 455, every job is accepted through sunoapi in the same
    delivery (the 455 read with kie's table, kie's breaker open after it); kie sees one call."""
    kie = SimServer(SimConfig(profile="kie", port=0, api_key=KEY_A, maintenance=True,
                              callbacks_enabled=False)).start()
    suno = SimServer(SimConfig(profile="sunoapi", port=0, api_key=KEY_B,
                               callbacks_enabled=False)).start()
    try:
        rt = make_rt({"name": "k", "api_key": KEY_A, "provider": "kie", "base_url": kie.url,
                      "weight": 1000},  # tried first nearly always
                     {"name": "s", "api_key": KEY_B, "provider": "sunoapi",
                      "base_url": suno.url, "weight": 0.001})
        ids = [rt.store.create(f"fo{n}", "add-instrumental", {**PARAMS, "title": f"fo {n}"})[0]
               .id for n in range(5)]
        assert [submit_job(rt, job_id).reason for job_id in ids] == ["submitted"] * 5
        assert [j.get("account") for j in rt.store.get_many(ids)] == ["s"] * 5
        assert stats(kie)["calls_total"] == 1 and stats(suno)["accepted"] == 5
        k = rt.account_named("k")
        assert k.submit.state()["calls"] == {"maintenance": 1}
        assert k.submit.state()["breaker"]["state"] == "open"
        assert rt.account_named("s").submit.state()["calls"] == {"accepted": 5}
    finally:
        kie.stop()
        suno.stop()


# -- the credit floor ---------------------------------------------------------------------

@pytest.fixture
def credit_sim():
    """A sunoapi simulator accepting KEY_A and KEY_B, 1000 credits each, 10 per accepted
    call; a long window that never throttles these tests."""
    server = SimServer(SimConfig(profile="sunoapi", port=0, api_key=KEY_A, api_keys=(KEY_B,),
                                 rate_limit=100, rate_window_s=60, callbacks_enabled=False,
                                 credits_balance=1000, credit_cost=10)).start()
    yield server
    server.stop()


def read(rt: Runtime, name: str):
    """One balance read for account ``name`` now (its interval lease cleared first)."""
    account = rt.account_named(name)
    rt.redis.delete(lease_key(rt, account))
    return read_credits(rt, account)


def fresh_jobs(rt: Runtime, tag: str, n: int) -> list[str]:
    return [rt.store.create(f"{tag}{i}", "add-instrumental", {**PARAMS, "title": f"{tag} {i}"})[0]
            .id for i in range(n)]


def test_a_configured_cost_stops_submissions_at_the_floor_before_the_provider_refuses(
        make_rt, credit_sim):
    """One account, 1000 credits, cost 10, floor 930: after one balance read it takes 7
    submissions and parks the 8th (the provider never answers "insufficient credits"); a
    higher balance read resumes it by itself."""
    rt = make_rt({"name": "a", "api_key": KEY_A, "base_url": credit_sim.url,
                  "submit_rate": "100/60s", "submit_burst": 100, "credit_cost": 10,
                  "credit_floor": 930}, BACKBEAT_CREDITS_INTERVAL="60")
    assert read(rt, "a").balance == 1000
    ids = fresh_jobs(rt, "cf", 8)
    assert [submit_job(rt, j).reason for j in ids] == ["submitted"] * 7 + ["parked (credits)"]
    doc = stats(credit_sim)
    assert doc["accepted"] == 7 and doc["credits"] == 0
    credits = limiter_status(rt)["accounts"][0]["credits"]
    assert (credits["cost"], credits["floor"], credits["room"]) == (10.0, 930.0, 0)
    assert wake_budget(rt) == 0  # the pump sends nothing the floor would refuse
    credit_sim.set_knobs(credits_balance=2000)  # a top-up
    assert read(rt, "a").balance == 2000
    assert wake_budget(rt) > 0
    assert submit_job(rt, ids[7]).reason == "submitted"


def test_the_cost_is_learned_and_jobs_move_to_an_account_with_credits(make_rt, credit_sim):
    """Two accounts, no configured cost: two reads around 3 accepted calls teach the cost
    (10); with 25 credits left, account a takes 2 more and the rest go through b, no
    provider "insufficient credits" answer anywhere; a's top-up brings it back."""
    rt = make_rt({"name": "a", "api_key": KEY_A, "base_url": credit_sim.url,
                  "submit_rate": "100/60s", "submit_burst": 100, "weight": 1000},
                 {"name": "b", "api_key": KEY_B, "base_url": credit_sim.url,
                  "submit_rate": "100/60s", "submit_burst": 100, "weight": 0.001},
                 BACKBEAT_CREDITS_INTERVAL="60")
    read(rt, "a")
    ids = fresh_jobs(rt, "cl", 3)
    assert [submit_job(rt, j).reason for j in ids] == ["submitted"] * 3
    assert read(rt, "a").balance == 970
    assert limiter_status(rt)["accounts"][0]["credits"]["cost"] == 10.0
    credit_sim.set_knobs(credits_balance=25)  # both keys down to 25 credits
    read(rt, "a")
    ids = fresh_jobs(rt, "cm", 4)
    assert [submit_job(rt, j).reason for j in ids] == ["submitted"] * 4
    assert [j.get("account") for j in rt.store.get_many(ids)] == ["a", "a", "b", "b"]
    assert stats(credit_sim)["credits"] == 0
    credit_sim.set_knobs(credits_balance=1000)
    read(rt, "a")
    (job_id,) = fresh_jobs(rt, "cn", 1)
    assert submit_job(rt, job_id).reason == "submitted"
    assert rt.store.get(job_id).get("account") == "a"


# -- surfaces ------------------------------------------------------------------------------

def test_metrics_carry_one_sample_per_account_in_one_family_each(make_rt):
    """Every limiter family appears once (a valid exposition) with a sample per account id;
    the credit floor's gauges appear once a cost and a balance are known."""
    rt = make_rt(*two("20/10s", credit_floor=5, credit_cost=2))
    a, b = rt.accounts
    b.submit.report(Outcome.MAINTENANCE)
    rt.redis.hset(rt.keys.limiter_state(a.id), mapping={
        "credits": 25, "credits:at": 1, "credits:cost": 2})
    text = metrics_text(rt).decode()
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names))  # no family written twice
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families for s in f.samples}
    for acct, is_open in ((a.id, 0), (b.id, 1)):
        assert samples[("backbeat_breaker_open", (("account", acct),))] == is_open
        assert samples[("backbeat_limit", (("account", acct), ("purpose", "submit")))] == 20
    assert samples[("backbeat_credits", (("account", a.id),))] == 25
    assert samples[("backbeat_credit_cost", (("account", a.id),))] == 2
    assert samples[("backbeat_credit_room", (("account", a.id),))] == 10  # (25 - 5) / 2
    assert ("backbeat_credits", (("account", b.id),)) not in samples  # never read
    assert KEY_A not in text and KEY_B not in text


def test_http_pauses_one_account_or_all_and_names_an_unknown_one(make_rt):
    from backbeat.api.web import create_app

    rt = make_rt(*two("20/10s"))
    http = create_app(rt.settings).test_client()
    http.environ_base["HTTP_AUTHORIZATION"] = "Bearer producer-token-1"  # the suite's token
    answer = http.post("/v1/limiter/pause", json={"reason": "rotate", "account": "b"})
    assert answer.status_code == 200
    by_name = {x["name"]: x for x in answer.get_json()["accounts"]}
    assert by_name["b"]["pause"]["reason"] == "rotate" and not by_name["a"]["pause"]["paused"]
    assert {choose(rt.accounts, 0, no_sleep).account.name for _ in range(3)} == {"a"}
    answer = http.post("/v1/limiter/pause", json={"account": "zz"})
    assert answer.status_code == 422
    assert answer.get_json()["errors"]["json"]["account"] == [
        "no account named 'zz' (configured: a, b)"]
    assert http.post("/v1/limiter/pause", json={}).status_code == 200
    assert all(x["pause"]["paused"] for x in limiter_status(rt)["accounts"])
    assert http.post("/v1/limiter/resume", json={"account": "a"}).status_code == 200
    status = {x["name"]: x["pause"]["paused"] for x in limiter_status(rt)["accounts"]}
    assert status == {"a": False, "b": True}
    assert http.post("/v1/limiter/resume").status_code == 200
    assert not any(x["pause"]["paused"] for x in limiter_status(rt)["accounts"])


# -- review mends -------------------------------------------------------------------------

def test_a_task_adopted_from_another_accounts_attempt_is_found_by_its_owner(make_rt, pool_sim):
    """A job whose attempts went through a and b names b, but its task is a's (a late
    callback of the first attempt adopted it): the poll through b is refused ("not found"),
    the next one asks a, and the job moves on; nothing fails."""
    rt = make_rt(*({**e, "base_url": pool_sim.url} for e in two()),
                 BACKBEAT_POLL_MIN_DELAY="0")
    task = requests.post(f"{pool_sim.url}/api/v1/generate/add-instrumental",
                         json={**PARAMS, "title": "adopted", "callBackUrl": "http://x/cb"},
                         headers={"Authorization": f"Bearer {KEY_A}"},
                         timeout=10).json()["data"]["taskId"]
    rt.store.create("adj", "add-instrumental", {**PARAMS, "title": "adopted"})
    rt.store.transition("adj", JobState.SUBMITTING, "claimed",
                        fields={"attempt_id": "x1", "account": "b", "accounts_tried": "a,b"})
    rt.store.transition("adj", JobState.SUBMITTED, "adopted", require_attempt="x1",
                        poll_delay_ms=0, fields={"upstream_task_id": task})
    run_cycle(rt)
    assert rt.store.get("adj").get("account") == "a"  # b did not know the task
    assert stats(pool_sim)["polls_other_key"] == 1
    rt.redis.zadd(rt.keys.poll, {"adj": 0})
    report = run_cycle(rt)
    assert report.moved == 1 and rt.store.get("adj").state is JobState.SUCCEEDED


def test_callbacks_are_checked_with_the_jobs_accounts_webhook_key(make_rt):
    """A kie account with a webhook key and a sunoapi account in one pool: the sunoapi job's
    unsigned callback is applied, the kie job's is refused (401), and signed with the key it
    is applied."""
    import base64
    import hashlib
    import hmac
    import time as clock

    from backbeat.api.web import create_app
    from backbeat.workers.signing import callback_url

    rt = make_rt({"name": "k", "api_key": KEY_A, "provider": "kie",
                  "webhook_key": "whk-secret-1"},
                 {"name": "s", "api_key": KEY_B, "provider": "sunoapi"})
    http = create_app(rt.settings).test_client()
    for job_id, account in (("wk", "k"), ("ws", "s")):
        rt.store.create(job_id, "add-instrumental", {**PARAMS, "title": job_id})
        rt.store.transition(job_id, JobState.SUBMITTING, "claimed",
                            fields={"attempt_id": "a1", "account": account,
                                    "accounts_tried": account})

    def post(job_id: str, headers: dict | None = None):
        url = callback_url(rt.settings, rt.secret, job_id).split("/v1/", 1)[1]
        body = {"code": 200, "msg": "ok", "data": {"callbackType": "text",
                                                   "task_id": f"t-{job_id}", "data": []}}
        return http.post(f"/v1/{url}", json=body, headers=headers or {})

    assert post("ws").status_code == 200
    assert post("wk").status_code == 401
    stamp = str(int(clock.time()))
    mac = hmac.new(b"whk-secret-1", f"t-wk.{stamp}".encode(), hashlib.sha256).digest()
    signed = {"X-Webhook-Timestamp": stamp,
              "X-Webhook-Signature": base64.b64encode(mac).decode()}
    assert post("wk", signed).status_code == 200
