"""Producers and their lanes (config/producers.py, workers/lanes.py, dispatch.lua) on a real
Redis: tokens name producers, a flood does not take another producer's share (deficit round
robin by weight, priority first within a lane), quotas refuse at enqueue with 429 and
Retry-After, lane jobs are never "rescued" as lost, and a waiting job's position and
predicted submission time."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from backbeat.config.producers import split_token
from backbeat.config.settings import Settings
from backbeat.workers import jobs, lanes
from backbeat.workers.errors import BudgetExceeded, QuotaExceeded, ValidationError
from backbeat.workers.runtime import Runtime

PREFIX = "ln"
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "tags": "rock", "negativeTags": "metal"}
LEASE_MS = 300_000


def request(title: str, **extra) -> dict:
    return {"type": "add-instrumental", "params": {**PARAMS, "title": title}, **extra}


@pytest.fixture
def make_rt(redis):
    """``make_rt(**env)``: a Runtime under a prefix of its own, its limiter paused (no
    session worker ever takes these jobs: the prefix is this file's) and its lanes forced
    (the broker's front holds ``target`` messages already, so a new job waits in its lane)."""
    for key in redis.scan_iter(f"{PREFIX}*:*", count=1000):
        redis.delete(key)
    made = iter(range(100))

    def make(**env: str) -> Runtime:
        prefix = f"{PREFIX}{next(made)}"
        rt = Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": prefix, **env}))
        return rt

    return make


def flood(rt: Runtime, producer: str, n: int, tag: str, **extra) -> list[str]:
    """Enqueue ``n`` jobs as ``producer`` straight into its lane (the fast path closed)."""
    rt.redis.sadd(rt.keys.lanes, "~")  # a lane is "in use": every new job waits in its lane
    ids = [jobs.enqueue(rt, request(f"{tag} {i}", **extra), producer=producer)[0].id
           for i in range(n)]
    rt.redis.srem(rt.keys.lanes, "~")
    return ids


def take(rt: Runtime, budget: int) -> list[str]:
    """One dispatch.lua call (no message sent: the ids it leased)."""
    from backbeat.workers import scripts

    k = rt.keys
    return scripts.register(rt.redis, "dispatch")(
        keys=[k.lanes, k.lane_of, k.parked, k.drr],
        args=[budget, LEASE_MS, k.lane_prefix, k.job_prefix, lanes.weights_arg(rt)])


def producers_of(rt: Runtime, ids: list[str]) -> Counter:
    return Counter(job.get("producer") for job in rt.store.get_many(ids))


# -- configuration ------------------------------------------------------------------------

def test_a_token_names_its_producer_and_a_bare_token_is_default():
    assert split_token("web:tok-1") == ("web", "tok-1")
    assert split_token("tok-2") == ("default", "tok-2")
    assert split_token("a b:tok") == ("default", "a b:tok")  # not a name: a bare token
    assert split_token("web:") == ("default", "web:")


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "BACKBEAT_PRODUCERS: must be a JSON object"),
    ('{"web": 3}', "BACKBEAT_PRODUCERS.web: must be a JSON object"),
    ('{"web": {"weight": 0.001}}', "BACKBEAT_PRODUCERS.web.weight: must be a number of at"),
    ('{"web": {"quota": "lots"}}', "BACKBEAT_PRODUCERS.web.quota: rate 'lots' is not"),
    ('{"web": {"credit_budget": -1}}', "BACKBEAT_PRODUCERS.web.credit_budget: must be a"),
    ('{"web": {"share": 1}}', "BACKBEAT_PRODUCERS.web: unknown field(s) share"),
    ('{"a b": {}}', "BACKBEAT_PRODUCERS.a b: a producer's name is"),
    ("{", "BACKBEAT_PRODUCERS: not valid JSON"),
])
def test_a_bad_producers_entry_fails_at_start_naming_the_field(text, message):
    with pytest.raises(ValueError) as err:
        Settings.from_env({"BACKBEAT_PRODUCERS": text})
    assert str(err.value).startswith(message), str(err.value)


# -- deficit round robin ------------------------------------------------------------------

def test_a_flood_gets_its_weight_share_and_no_more(make_rt):
    """Producer A (weight 1) floods 200 jobs, then B (weight 3) adds 100: taken in budgets of
    4, each stretch while both lanes hold jobs gives B three times A's jobs (within one
    quantum); A's jobs still all go in the end, oldest first."""
    rt = make_rt(BACKBEAT_PRODUCERS=json.dumps({"b": {"weight": 3}}))
    a_ids = flood(rt, "a", 200, "a")
    b_ids = flood(rt, "b", 100, "b")
    taken = [job_id for _ in range(20) for job_id in take(rt, 4)]
    got = producers_of(rt, taken)
    assert sum(got.values()) == 80
    assert abs(got["b"] - 3 * got["a"]) <= 4, got  # 60 / 20 within one round
    # within a lane, oldest first (same priority)
    a_taken = [j for j in taken if j in set(a_ids)]
    assert a_taken == a_ids[:len(a_taken)]
    rest = take(rt, 1000)
    assert set(rest) | set(taken) == set(a_ids) | set(b_ids)
    assert rt.redis.scard(rt.keys.lanes) == 0 and rt.redis.hlen(rt.keys.lane_of) == 0
    # every taken job is leased in the parked set for the pump to send (a lost message is
    # sent again when the lease ends)
    assert rt.redis.zcard(rt.keys.parked) == 300


def test_priority_orders_a_lane_and_cancelled_jobs_are_skipped(make_rt):
    rt = make_rt()
    low = flood(rt, "a", 3, "low")
    (high,) = flood(rt, "a", 1, "high", priority=9)
    jobs.cancel(rt, low[0])
    assert take(rt, 10) == [high, low[1], low[2]]


def test_equal_weights_alternate_between_lanes_across_small_budgets(make_rt):
    rt = make_rt()
    flood(rt, "a", 30, "a")
    flood(rt, "b", 30, "b")
    flood(rt, "c", 30, "c")
    seen = [rt.store.get(j).get("producer") for _ in range(10) for j in take(rt, 2)]
    counts = Counter(seen)
    assert max(counts.values()) - min(counts.values()) <= 1, counts


# -- the enqueue path ---------------------------------------------------------------------

def test_an_idle_system_sends_at_once_and_a_busy_one_admits_to_the_lane(make_rt):
    rt = make_rt()
    job, _ = jobs.enqueue(rt, request("idle"), producer="a")
    assert not rt.redis.hexists(rt.keys.lane_of, job.id)  # sent: no lane in use, queue short
    assert rt.redis.zscore(rt.keys.outbox, job.id) is None
    ids = flood(rt, "a", 2, "busy")
    assert all(rt.redis.hget(rt.keys.lane_of, j) == "a" for j in ids)
    assert all(rt.redis.zscore(rt.keys.outbox, j) is None for j in ids)
    # a later job waits too: a lane is in use
    later, _ = jobs.enqueue(rt, request("later"), producer="b")
    assert rt.redis.hget(rt.keys.lane_of, later.id) == "b"
    assert rt.store.get(later.id).get("producer") == "b"


def test_lane_jobs_are_not_rescued_as_lost(make_rt):
    rt = make_rt()
    ids = flood(rt, "a", 3, "old")
    future = rt.store.now_ms() + 10_000
    assert rt.store.rescue_stranded(future, 100) == 0
    assert rt.redis.zcard(rt.keys.parked) == 0
    assert all(rt.redis.hget(rt.keys.lane_of, j) == "a" for j in ids)


def test_a_quota_refuses_with_the_wait_and_a_replay_costs_nothing(make_rt):
    rt = make_rt(BACKBEAT_PRODUCERS=json.dumps({"batch": {"quota": "3/60s"}}))
    first, _ = jobs.enqueue(rt, request("q0", idempotency_key="q-0"), producer="batch")
    for i in (1, 2):
        jobs.enqueue(rt, request(f"q{i}"), producer="batch")
    again, created = jobs.enqueue(rt, request("q0", idempotency_key="q-0"), producer="batch")
    assert again.id == first.id and not created  # a replay: not counted
    with pytest.raises(QuotaExceeded) as err:
        jobs.enqueue(rt, request("q3"), producer="batch")
    assert 55 < err.value.retry_after_s <= 60 and "3/60s" in str(err.value)
    jobs.enqueue(rt, request("other"), producer="web")  # another producer: no quota
    assert rt.redis.zcard(rt.keys.jobs) == 4


def test_the_client_names_its_producer_and_checks_the_name(make_rt):
    from backbeat.api.client import Client

    rt = make_rt()
    client = Client(rt.settings)
    job = client.enqueue("add-instrumental", {**PARAMS, "title": "c"}, producer="cli")
    assert job["producer"] == "cli"
    with pytest.raises(ValidationError) as err:
        client.enqueue("add-instrumental", {**PARAMS, "title": "d"}, producer="no good")
    assert "producer" in err.value.messages


# -- position and prediction ----------------------------------------------------------------

def test_position_counts_the_jobs_the_pump_takes_first(make_rt):
    """Lanes a (10 jobs) and b (4 jobs), equal weights: a's 6th job waits for a's 5 ahead
    and b's 4 (b has fewer than its share); b's 2nd for b's 1 and a's 2. At 20 per 10 s the
    prediction is ahead / 2 per second from now."""
    rt = make_rt()
    a_ids = flood(rt, "a", 10, "a")
    b_ids = flood(rt, "b", 4, "b")
    rt.submit_limiter.pause()  # gated: no rate, no prediction
    assert lanes.position(rt, a_ids[5])["predicted_submit_ms"] is None
    rt.submit_limiter.resume()
    where = lanes.position(rt, a_ids[5])
    assert (where["lane"], where["position"], where["ahead"]) == ("a", 5, 5 + 4)
    assert where["rate_per_s"] == 2.0
    now = rt.store.now_ms()
    assert abs(where["predicted_submit_ms"] - (now + 9 / 2 * 1000)) < 1000
    assert lanes.position(rt, b_ids[1])["ahead"] == 1 + 2
    job = rt.store.get(a_ids[5])
    shown = jobs.queue_position(rt, job)
    assert shown["predicted_submit_at"].endswith("+00:00") and shown["ahead"] == 9
    take(rt, 100)
    assert lanes.position(rt, a_ids[5]) is None  # dispatched: no longer in a lane


def test_http_records_the_tokens_producer_and_answers_429_with_retry_after(make_rt):
    from backbeat.api.web import create_app

    rt = make_rt(BACKBEAT_API_TOKENS="web:tok-web,batch:tok-batch,tok-bare",
                 BACKBEAT_PRODUCERS=json.dumps({"batch": {"quota": "2/30s"}}))
    http = create_app(rt.settings).test_client()

    def post(token: str, title: str):
        return http.post("/v1/jobs", json=request(title),
                         headers={"Authorization": f"Bearer {token}"})

    assert post("tok-web", "w").get_json()["producer"] == "web"
    assert post("tok-bare", "d").get_json()["producer"] == "default"
    assert post("web:tok-web", "x").status_code == 401  # the entry is not the token
    assert [post("tok-batch", f"b{i}").status_code for i in range(2)] == [202, 202]
    refused = post("tok-batch", "b2")
    assert refused.status_code == 429
    assert 25 <= int(refused.headers["Retry-After"]) <= 30
    assert "quota of 2/30s" in refused.get_json()["message"]
    assert post("tok-web", "w2").status_code == 202  # another producer: no quota


def test_a_credit_budget_refuses_with_402_and_a_cancel_gives_back(make_rt):
    """Budget 25 at 10 credits per job (the account's credit_cost): two jobs reserve 20, the
    third is refused (402 over HTTP, BudgetExceeded in Python) naming the figures; a
    cancelled job gives its 10 back; a producer without a budget is never refused."""
    from backbeat.api.web import create_app

    accounts = json.dumps([{"name": "a", "api_key": "sk-budget-a", "credit_cost": 10}])
    rt = make_rt(BACKBEAT_ACCOUNTS=accounts, BACKBEAT_API_TOKENS="batch:tok-batch",
                 BACKBEAT_PRODUCERS=json.dumps({"batch": {"credit_budget": 25}}))
    first, _ = jobs.enqueue(rt, request("b0"), producer="batch")
    jobs.enqueue(rt, request("b1"), producer="batch")
    with pytest.raises(BudgetExceeded) as err:
        jobs.enqueue(rt, request("b2"), producer="batch")
    assert (err.value.budget, err.value.reserved, err.value.cost) == (25, 20, 10)
    http = create_app(rt.settings).test_client()
    refused = http.post("/v1/jobs", json=request("b3"),
                        headers={"Authorization": "Bearer tok-batch"})
    assert refused.status_code == 402
    assert refused.get_json()["message"] == (
        "producer 'batch' would pass its credit budget of 25: 20 reserved by its jobs, one "
        "more costs 10")
    jobs.cancel(rt, first.id)
    assert jobs.enqueue(rt, request("b4"), producer="batch")[1]
    for i in range(5):  # no budget: never refused
        jobs.enqueue(rt, request(f"w{i}"), producer="web")


def test_without_a_known_cost_a_budget_reserves_nothing(make_rt):
    rt = make_rt(BACKBEAT_PRODUCERS=json.dumps({"batch": {"credit_budget": 1}}))
    for i in range(3):
        jobs.enqueue(rt, request(f"n{i}"), producer="batch")
    assert rt.redis.hget(rt.keys.budget, "batch") is None


def test_while_jobs_are_parked_new_jobs_wait_in_their_lanes(make_rt):
    """Every account gated: workers park what they take; a new job then waits in its lane
    (not sent straight to the broker to be parked in arrival order)."""
    rt = make_rt()
    rt.store.park("some-parked-job", 0)
    job, _ = jobs.enqueue(rt, request("gated"), producer="a")
    assert rt.redis.hget(rt.keys.lane_of, job.id) == "a"


def test_a_cancelled_last_job_frees_the_lane_and_a_parked_job_is_not_taken_twice(make_rt):
    rt = make_rt()
    (only,) = flood(rt, "a", 1, "only")
    jobs.cancel(rt, only)
    assert rt.redis.scard(rt.keys.lanes) == 0  # an idle system sends at once again
    first, second = flood(rt, "b", 2, "b")
    rt.store.park(first, 60_000)  # e.g. retried with a backoff while still in its lane
    assert take(rt, 10) == [second]
    assert rt.redis.zscore(rt.keys.parked, first) > rt.store.now_ms() + 50_000  # untouched
