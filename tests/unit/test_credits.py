"""The credit balance read (tasks/credits.py) on a real Redis and the simulator over HTTP: one
read per interval fleet-wide through the poll bucket, its answer reported like any call, the
balance and its age in the account's state hash, ``limiter_status`` and ``/metrics``; the
client's ``credits()`` on both profiles; the simulator's credit endpoint and its charges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from backbeat.config.celery import celery_config
from backbeat.config.settings import Secret, Settings
from backbeat.provider.client import ProviderClient, ProviderError, parse_balance
from backbeat.provider.profiles import ENDPOINTS, Outcome, get_profile
from backbeat.simulator import SimConfig, SimServer
from backbeat.tasks.credits import TOKEN_WAIT_S, lease_key, read_credits
from backbeat.workers.overview import overview
from backbeat.workers.redis_conn import server_ms
from backbeat.workers.runtime import Runtime
from backbeat.workers.status import limiter_status, metrics_text

#: a key prefix of this file's own
PREFIX = "cr"
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "title": "T", "tags": "rock",
          "negativeTags": "metal"}
CALLBACK = "http://127.0.0.1:9/cb"


@pytest.fixture
def make_rt(redis):
    """``make_rt(interval)``: a Runtime under PREFIX (every key of it removed first) reading
    the balance every ``interval`` seconds; the suite's sunoapi simulator and key."""
    for key in redis.scan_iter(f"{PREFIX}:*", count=1000):
        redis.delete(key)

    def make(interval: str = "60", **env: str) -> Runtime:
        return Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": PREFIX,
                                          "BACKBEAT_CREDITS_INTERVAL": interval, **env}))

    return make


def samples(rt: Runtime) -> dict[str, float]:
    """The exposition's samples of the account, by name (one per name here)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics_text(rt).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.labels == {"account": rt.account}}


def grants(redis, lim) -> int:
    return redis.zcard(lim.log_key)


def test_a_read_takes_a_poll_grant_and_shows_the_balance_everywhere(make_rt, sim, redis):
    rt = make_rt()
    sim.set_knobs(credits_balance=4321)
    # Given no read yet: no balance anywhere, no gauge (not a made-up 0)
    assert limiter_status(rt)["credits"] == {"balance": None, "read_s_ago": None,
                                             "cost": None, "floor": 0.0, "room": None}
    assert "backbeat_credits" not in samples(rt)
    assert "backbeat_credits_age_seconds" not in samples(rt)

    read = read_credits(rt)

    # Then one credit call went out on a poll grant, reported as an accepted poll
    assert (read.reason, read.balance) == ("accepted", 4321)
    assert sim.stats()["credit_checks"] == 1 and sim.stats()["polls"] == 0
    assert grants(redis, rt.poll_limiter) == 1 and grants(redis, rt.submit_limiter) == 0
    state = redis.hgetall(rt.keys.limiter_state(rt.account))
    assert state["poll:calls:accepted"] == "1" and "submit:calls:accepted" not in state
    # the balance and the Redis time of the read, in the account's state hash
    assert state["credits"] == "4321"
    assert abs(int(state["credits:at"]) - server_ms(redis)) < 5_000
    assert int(state["credits:at"]) == read.at_ms
    # limiter_status, the overview and /metrics show it
    status = limiter_status(rt)["credits"]
    assert status["balance"] == 4321 and 0 <= status["read_s_ago"] < 5
    assert overview(rt)["credits"]["balance"] == 4321
    s = samples(rt)
    assert s["backbeat_credits"] == 4321 and 0 <= s["backbeat_credits_age_seconds"] < 5
    # the age grows with the Redis clock (the read was 7 s ago)
    redis.hset(rt.keys.limiter_state(rt.account), "credits:at", server_ms(redis) - 7_000)
    assert 7 <= samples(rt)["backbeat_credits_age_seconds"] < 12
    assert 7 <= limiter_status(rt)["credits"]["read_s_ago"] < 12


def test_the_balance_drops_by_the_cost_of_each_accepted_submission(make_rt, sim):
    rt = make_rt("0.2")  # a short interval: the next round may read again soon
    sim.set_knobs(credits_balance=100, credit_cost=10)
    assert read_credits(rt).balance == 100
    for n in range(3):
        assert rt.provider.create("add-instrumental", {**PARAMS, "title": f"t{n}"},
                                  CALLBACK).outcome is Outcome.ACCEPTED
    time.sleep(0.25)  # the lease of the first round lapses
    read = read_credits(rt)
    assert (read.reason, read.balance) == ("accepted", 70)
    assert samples(rt)["backbeat_credits"] == 70
    stats = sim.stats()
    assert stats["credits_charged"] == 30 and list(stats["balances"].values()) == [70]
    assert rt.settings.api_key.reveal() not in str(stats)


def test_a_455_during_the_read_trips_the_breaker_like_any_call(make_rt, sim, redis):
    rt = make_rt()
    sim.set_knobs(maintenance=True)
    read = read_credits(rt)
    assert (read.reason, read.effect, read.balance) == ("maintenance", "opened", None)
    # the account's breaker is open for both buckets: a submission is refused now
    assert rt.poll_limiter.state()["breaker"]["state"] == "open"
    refused = rt.submit_limiter.try_acquire()
    assert not refused.granted and refused.kind == "breaker"
    s = samples(rt)
    assert s["backbeat_breaker_trips_total"] == 1 and s["backbeat_breaker_open"] == 1
    state = redis.hgetall(rt.keys.limiter_state(rt.account))
    assert state["poll:calls:maintenance"] == "1"
    # no balance was read, none is shown
    assert "credits" not in state and "backbeat_credits" not in s
    assert limiter_status(rt)["credits"]["balance"] is None


def test_without_a_poll_token_the_round_is_skipped_at_once(make_rt, sim):
    rt = make_rt("0.2")
    rt.poll_limiter.report(Outcome.MAINTENANCE)  # the breaker is open: no grant for polls
    began = time.monotonic()
    read = read_credits(rt)
    assert read.reason == "no_token:breaker"
    assert time.monotonic() - began < TOKEN_WAIT_S + 1
    assert sim.stats()["credit_checks"] == 0


def test_the_lease_keeps_concurrent_reads_to_one_provider_call(make_rt, sim, redis):
    # Given four workers' runtimes (their own Redis and HTTP connections) and a slow provider
    sim.set_knobs(latency_ms=300)
    rts = [make_rt("2") for _ in range(4)]
    start = threading.Barrier(len(rts))
    results: list[str] = []

    def run(rt: Runtime) -> None:
        start.wait()
        results.append(read_credits(rt).reason)

    threads = [threading.Thread(target=run, args=(rt,)) for rt in rts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Then one read reached the provider; the others found the lease
    assert sorted(results) == ["accepted", "leased", "leased", "leased"]
    assert sim.stats()["credit_checks"] == 1
    # the lease lasts 90% of the interval: a later tick in the same interval does nothing
    ttl_ms = redis.pttl(lease_key(rts[0]))
    assert 0 < ttl_ms <= 1_800  # (how much is left depends on the machine's load)
    assert read_credits(rts[0]).reason == "leased"
    # and once it lapses the next tick reads again
    time.sleep(ttl_ms / 1000 + 0.05)
    assert read_credits(rts[1]).reason == "accepted"
    assert sim.stats()["credit_checks"] == 2


def test_an_older_read_never_overwrites_a_newer_one(make_rt, sim, redis):
    rt = make_rt("0.2")
    sim.set_knobs(credits_balance=50)
    first = read_credits(rt)
    state_key = rt.keys.limiter_state(rt.account)
    redis.hset(state_key, "credits:grant", first.at_ms + 60_000)  # a read granted later wrote
    time.sleep(0.25)
    sim.set_knobs(credits_balance=40)
    read = read_credits(rt)
    assert read.reason == "accepted" and read.at_ms == 0  # answered, but not stored
    assert redis.hget(state_key, "credits") == "50"


def test_a_disabled_interval_reads_nothing_and_beat_sends_no_tick(make_rt, sim, redis):
    rt = make_rt("0")
    assert read_credits(rt).reason == "disabled"
    assert sim.stats()["credit_checks"] == 0
    assert not redis.exists(lease_key(rt))
    assert grants(redis, rt.poll_limiter) == 0
    assert "credits" not in celery_config(rt.settings)["beat_schedule"]
    # enabled: a tick every interval, on the reconcile queue (housekeeping stays Redis-only)
    on = celery_config(make_rt("45").settings)
    assert on["beat_schedule"]["credits"]["task"] == "backbeat.credits"
    assert on["beat_schedule"]["credits"]["schedule"] == 45
    assert on["task_routes"]["backbeat.credits"] == {"queue": "reconcile"}


def test_a_refused_key_is_reported_and_pauses_submissions(make_rt, sim):
    rt = make_rt(BACKBEAT_API_KEY="sk-wrong")
    read = read_credits(rt)
    assert (read.reason, read.effect) == ("unauthorized", "paused")
    assert limiter_status(rt)["pause"]["reason"] == "unauthorized"


def test_a_404_from_the_credit_path_never_pauses_submissions(make_rt, sim):
    """A gateway that serves the generation endpoints but not the credit path answers 404
    there: the read fails as a transient error, and submissions go on (a 404 on a create
    call still pauses them: test_provider_codes)."""
    rt = make_rt(BACKBEAT_API_BASE_URL=f"{sim.url}/no-such-gateway-path")
    read = read_credits(rt)
    assert read.reason == "transient" and read.effect == "none"
    status = limiter_status(rt)
    assert status["pause"]["paused"] is False and status["credits"]["balance"] is None
    assert rt.submit_limiter.try_acquire().granted


# -- the client --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["sunoapi", "kie"])
def test_the_client_reads_each_profiles_credit_endpoint(profile):
    with SimServer(SimConfig(profile=profile, api_key="k", credits_balance=12.5)) as sim:
        client = ProviderClient(get_profile(profile), sim.url, Secret("k"))
        assert client.credits() == 12.5
        assert client.credits_answer().code == 200
        sim.set_knobs(credits_balance=90)
        balance = client.credits()
        assert balance == 90 and isinstance(balance, int)
        # any other answer: the classified outcome, as the other calls have it
        with pytest.raises(ProviderError) as bad_key:
            ProviderClient(get_profile(profile), sim.url, Secret("nope")).credits()
        assert (bad_key.value.answer.outcome, bad_key.value.answer.code) == (
            Outcome.UNAUTHORIZED, 401)
        sim.set_knobs(maintenance=True, http_status_errors=True)
        answer = client.credits_answer()
        assert (answer.outcome, answer.code) == (Outcome.MAINTENANCE, 455)
        sim.set_knobs(maintenance=False, server_error_rate=1.0)
        assert client.credits_answer().outcome is Outcome.TRANSIENT
        assert sim.stats()["credit_checks"] == 6


def test_a_200_without_a_number_is_transient():
    client = ProviderClient(get_profile("kie"), "http://127.0.0.1:9", Secret("k"))
    for data in (None, "lots", True, {"credits": 3}, float("nan")):
        answer = client.classify(200, {"code": 200, "msg": "success", "data": data})
        assert answer.outcome is Outcome.ACCEPTED and parse_balance(answer.data) is None
    assert [parse_balance(v) for v in (100, 12.5, "40", " 7.0 ", 0)] == [100, 12.5, 40, 7, 0]


# -- the simulator -----------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["sunoapi", "kie"])
def test_the_simulator_counts_a_credit_call_as_a_poll_in_the_account_window(profile):
    throttle = get_profile(profile).emits["throttled"]
    with SimServer(SimConfig(profile=profile, rate_limit=2, rate_window_s=30)) as sim, \
            requests.Session() as http:
        http.trust_env = False
        credit = sim.url + get_profile(profile).credit_path
        # not counted by default (as polls are not): a full window does not refuse it
        for _ in range(3):
            assert http.get(credit, timeout=10).json()["code"] == 200
        sim.set_knobs(polls_count_in_window=True)
        assert http.get(credit, timeout=10).json()["code"] == 200
        assert http.post(sim.url + ENDPOINTS["add-instrumental"], timeout=10,
                         json={**PARAMS, "callBackUrl": CALLBACK}).json()["code"] == 200
        # the window (2 in 30 s) is full: the credit call is throttled, and so is a create
        assert http.get(credit, timeout=10).json()["code"] == throttle
        assert http.post(sim.url + ENDPOINTS["add-instrumental"], timeout=10,
                         json={**PARAMS, "callBackUrl": CALLBACK}).json()["code"] == throttle
        stats = sim.stats()
        assert (stats["credit_checks"], stats["credit_checks_throttled"]) == (5, 1)


def test_the_simulator_charges_the_default_cost_and_refuses_below_it():
    defaults = SimConfig()
    assert defaults.credit_cost == 10 and defaults.credits_balance >= 1_000_000
    with SimServer(SimConfig(profile="kie", credits_balance=15)) as sim, \
            requests.Session() as http:
        http.trust_env = False
        key = {"Authorization": "Bearer sk-abcd1234"}
        create = sim.url + ENDPOINTS["add-instrumental"]
        body = {**PARAMS, "callBackUrl": CALLBACK}
        assert http.post(create, json=body, headers=key, timeout=10).json()["code"] == 200
        refused = http.post(create, json=body, headers=key, timeout=10).json()
        assert refused["code"] == 402  # kie's insufficient credits: 5 left, the cost is 10
        assert http.get(sim.url + get_profile("kie").credit_path, headers=key,
                        timeout=10).json()["data"] == 5
        stats = sim.stats()
        assert stats["balances"] == {"...1234": 5} and stats["credits_charged"] == 10
        assert (stats["credits_balance"], stats["credit_cost"]) == (15, 10)
        assert stats["credits"] == 1 and stats["accepted"] == 1


def test_the_worker_app_registers_every_task_beat_sends_and_routes():
    """A task beat schedules or the routes name but no worker registers is refused by every
    worker (an 'unregistered task' error per tick): the worker's app includes them all. In a
    fresh interpreter, as a worker starts (this one has imported the task modules already)."""
    probe = (
        "import json, os\n"
        "os.environ['BACKBEAT_CREDITS_INTERVAL'] = '60'\n"
        "from backbeat.config.celery import celery_config\n"
        "from backbeat.config.settings import get_settings\n"
        "from backbeat.workers.celery_app import app\n"
        "app.loader.import_default_modules()\n"
        "cfg = celery_config(get_settings())\n"
        "named = {e['task'] for e in cfg['beat_schedule'].values()} | set(cfg['task_routes'])\n"
        "print(json.dumps([sorted(named), sorted(set(app.tasks))]))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    named, registered = (set(x) for x in json.loads(out.stdout.splitlines()[-1]))
    assert "backbeat.credits" in named
    assert named <= registered, named - registered
