"""Several provider accounts driven by real worker processes against the simulator over HTTP,
every figure counted at the simulator's side (each key's own window, its own ledger).

- Throughput scales with accounts: under backlog, the accepted calls in the first windows are
  at least 0.95 x N x one account's rule, and no key's window ever holds more than its rule.
- Each job is polled through the key that created it (the simulator answers "not found" to
  any other key) and names its account.
- Failover across providers: a kie account in maintenance (455) and a sunoapi account in one
  pool: every job is done through sunoapi; kie gets its breaker's probes only.
- The credit floor with real workers: an account stops before its balance would pass its
  floor (no "insufficient credits" answer), its jobs wait, and a top-up resumes them.

The scaling runs are in ``make test-all`` (``slow``); the benchmark ``accounts`` measures the
same with 1, 2 and 4 keys (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from backbeat.devstack.processes import free_port
from backbeat.simulator import SimConfig, SimServer
from backbeat.workers.runtime import Runtime

pytestmark = pytest.mark.integration

KEYS = [f"sk-fleet-acct-{n}-{'0123456789'[n] * 4}" for n in range(4)]
MASKED = [f"...{key[-4:]}" for key in KEYS]
#: each key's rule in the fast runs: 10 calls in any 2 s window
LIMIT, WINDOW_S = 10, 2.0
#: the windows whose accepted calls are counted (the backlog outlasts them)
WINDOWS = 4


@pytest.fixture
def pool_sim() -> Iterator[SimServer]:
    """A sunoapi simulator on a free port accepting the four KEYS, each with its own window
    of LIMIT per WINDOW_S; no callbacks (jobs finish by polling, so every poll is counted)."""
    server = SimServer(SimConfig(profile="sunoapi", port=free_port(), api_key=KEYS[0],
                                 api_keys=tuple(KEYS[1:]), rate_limit=LIMIT,
                                 rate_window_s=WINDOW_S, callbacks_enabled=False,
                                 text_after_s=0.3, first_after_s=0.6,
                                 complete_after_s=0.9)).start()
    yield server
    server.stop()


def accepted_in_first_windows(calls: list[dict[str, Any]], window_s: float, windows: int
                              ) -> int:
    """Create calls accepted from the first acceptance until ``windows`` windows later (at
    the simulator's arrival times, every key together)."""
    times = sorted(c["t"] for c in calls if c["code"] == 200)
    return sum(1 for t in times if t < times[0] + windows * window_s)


def accounts(n: int, base_url: str, rate: str | None = None) -> str:
    return json.dumps([{"name": f"acct{i}", "api_key": KEYS[i], "base_url": base_url,
                        **({"submit_rate": rate} if rate else {})} for i in range(n)])


def instrumental(tag: str) -> dict[str, Any]:
    return {"uploadUrl": "https://example.com/v.mp3", "title": tag, "tags": "rock",
            "negativeTags": "metal"}


def run_backlog(f, sim: SimServer, n: int, limit: int, window_s: float, jobs: int) -> None:
    """Enqueue ``jobs`` at once, wait for all, then check every figure at the simulator."""
    ids = [f.client.enqueue("add-instrumental", instrumental(f"acct-{n}-{i}"))["id"]
           for i in range(jobs)]
    done = f.wait_all(ids, timeout=jobs / (n * limit / window_s) * 3 + 120)
    assert Counter(j["state"] for j in done) == {"succeeded": jobs}
    # every account took a share, and each job names the one that accepted it
    assert set(Counter(j["account"] for j in done)) == {f"acct{i}" for i in range(n)}
    stats = requests.get(f"{sim.url}/__stats", timeout=10).json()
    calls = requests.get(f"{sim.url}/__calls", timeout=10).json()
    by_key = stats["by_key"]  # every key the simulator accepts, used or not
    assert {k for k, v in by_key.items() if v["calls_total"]} == set(MASKED[:n])
    for masked in MASKED[:n]:  # no key's window ever over its rule
        assert by_key[masked]["max_calls_in_window"] <= limit, (masked, by_key[masked])
        assert by_key[masked]["throttled"] == 0
    assert stats["accepted"] == jobs and stats["duplicates_by_title"] == 0
    # polled through its own key only (another key's task id is "not found")
    assert stats["polls_other_key"] == 0 and stats["polls_unknown_task"] == 0
    # scaling: under backlog the pool makes N x the rule
    accepted = accepted_in_first_windows(calls, window_s, WINDOWS)
    print(f"accounts={n} accepted in {WINDOWS} windows: {accepted} of {n * limit * WINDOWS}")
    assert accepted >= 0.95 * n * limit * WINDOWS, (accepted, n * limit * WINDOWS)


@pytest.mark.slow
def test_two_accounts_make_twice_one_accounts_rule(fleet, pool_sim):
    f = fleet("ac2", workers=2, concurrency=4,
              BACKBEAT_ACCOUNTS=accounts(2, pool_sim.url, f"{LIMIT}/{WINDOW_S:g}s"))
    run_backlog(f, pool_sim, 2, LIMIT, WINDOW_S, 2 * LIMIT * (WINDOWS + 1))


@pytest.mark.slow
def test_four_accounts_make_four_times_one_accounts_rule(fleet, pool_sim):
    f = fleet("ac4", workers=2, concurrency=6,
              BACKBEAT_ACCOUNTS=accounts(4, pool_sim.url, f"{LIMIT}/{WINDOW_S:g}s"))
    run_backlog(f, pool_sim, 4, LIMIT, WINDOW_S, 4 * LIMIT * (WINDOWS + 1))


@pytest.mark.slow
def test_two_accounts_on_the_shipped_defaults(fleet, run_dir):
    """The twin on the defaults: 20 calls per 10 s per key, the shipped limiter, delays and
    timeouts (only the connection variables and BACKBEAT_ACCOUNTS set)."""
    server = SimServer(SimConfig(profile="sunoapi", port=free_port(), api_key=KEYS[0],
                                 api_keys=(KEYS[1],), rate_limit=20, rate_window_s=10,
                                 callbacks_enabled=False, text_after_s=0.3, first_after_s=0.6,
                                 complete_after_s=0.9)).start()
    try:
        f = fleet("acd", workers=2, concurrency=2, defaults=True,
                  BACKBEAT_ACCOUNTS=accounts(2, server.url))
        run_backlog(f, server, 2, 20, 10.0, 2 * 20 * (WINDOWS + 1))
    finally:
        server.stop()


def test_a_kie_account_in_maintenance_fails_over_to_a_sunoapi_account(fleet):
    """One pool, two providers, each on its own simulator: kie answers 455 to everything.
    Every job is accepted through sunoapi (and polled there); kie sees its first call and the
    breaker's probes only, each answer read with kie's own table (455 = maintenance)."""
    kie = SimServer(SimConfig(profile="kie", port=free_port(), api_key=KEYS[0],
                              maintenance=True, callbacks_enabled=False)).start()
    suno = SimServer(SimConfig(profile="sunoapi", port=free_port(), api_key=KEYS[1],
                               callbacks_enabled=False, text_after_s=0.3, first_after_s=0.6,
                               complete_after_s=0.9)).start()
    try:
        pool = [{"name": "kie", "api_key": KEYS[0], "provider": "kie", "base_url": kie.url,
                 "weight": 5},
                {"name": "suno", "api_key": KEYS[1], "provider": "sunoapi",
                 "base_url": suno.url}]
        f = fleet("acf", workers=2, concurrency=2, BACKBEAT_ACCOUNTS=json.dumps(pool),
                  BACKBEAT_SUBMIT_RATE="10/2s", BACKBEAT_BREAKER_BASE="60")
        ids = [f.client.enqueue("add-instrumental", instrumental(f"fo-{i}"))["id"]
               for i in range(20)]
        done = f.wait_all(ids)
        assert Counter((j["state"], j["account"]) for j in done) == {("succeeded", "suno"): 20}
        k = requests.get(f"{kie.url}/__stats", timeout=10).json()
        s = requests.get(f"{suno.url}/__stats", timeout=10).json()
        assert k["accepted"] == 0 and 1 <= k["maintenance"] <= 4  # calls in flight at the trip
        assert s["accepted"] == 20 and s["polls_unknown_task"] == 0
        status = f.client.limiter()
        by_name = {a["name"]: a for a in status["accounts"]}
        assert by_name["kie"]["breaker"]["state"] != "closed"
        assert by_name["kie"]["submit"]["calls"].get("maintenance") == k["maintenance"]
        assert by_name["suno"]["breaker"]["state"] == "closed"
    finally:
        kie.stop()
        suno.stop()


@pytest.mark.slow
def test_the_credit_floor_stops_an_account_before_the_provider_refuses(fleet, wait):
    """One account, 300 credits, 10 per accepted call, floor 100, balance read every second:
    20 accepted, then nothing until a top-up; no "insufficient credits" answer; after the
    top-up all 30 jobs succeed."""
    sim = SimServer(SimConfig(profile="sunoapi", port=free_port(), api_key=KEYS[0],
                              credits_balance=300, credit_cost=10, callbacks_enabled=False,
                              text_after_s=0.3, first_after_s=0.6,
                              complete_after_s=0.9)).start()
    try:
        pool = [{"name": "main", "api_key": KEYS[0], "base_url": sim.url, "credit_floor": 100}]
        f = fleet("acc", workers=2, concurrency=2, BACKBEAT_ACCOUNTS=json.dumps(pool),
                  BACKBEAT_SUBMIT_RATE="10/2s", BACKBEAT_CREDITS_INTERVAL="1")
        rt = Runtime(f.settings)
        wait(lambda: rt.redis.hget(rt.keys.limiter_state(rt.primary.id), "credits"),
                   what="a first balance read")
        ids = [f.client.enqueue("add-instrumental", instrumental(f"cf-{i}"))["id"]
               for i in range(30)]
        stats = lambda: requests.get(f"{sim.url}/__stats", timeout=10).json()  # noqa: E731
        wait(lambda: stats()["accepted"] >= 20, what="20 accepted")
        time.sleep(4)  # four more balance reads: nothing more is submitted
        assert stats()["accepted"] == 20 and stats()["credits"] == 0
        status = f.client.limiter()["accounts"][0]["credits"]
        assert status["room"] == 0 and status["cost"] == 10.0
        sim.set_knobs(credits_balance=1000)  # a top-up
        done = f.wait_all(ids)
        assert Counter(j["state"] for j in done) == {"succeeded": 30}
        assert stats()["credits"] == 0 and stats()["accepted"] == 30
    finally:
        sim.stop()
