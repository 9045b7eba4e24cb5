"""kie.ai end to end: several worker processes against the simulator's kie profile (its own
server: the session simulator runs sunoapi.org). kie's throttle is 429 inside an HTTP 200 body,
its credits code 402, its maintenance 455; and polls that count in the account's window
(``BACKBEAT_POLLS_SHARE_SUBMIT_WINDOW``).

Every figure is counted at the simulator's side, never timed.
"""

from __future__ import annotations

import pytest
import requests

from backbeat.devstack.processes import wait_until
from backbeat.provider.profiles import get_profile
from backbeat.simulator import SimConfig, SimServer
from backbeat.simulator.ledger import max_in_window
from backbeat.workers.runtime import Runtime

pytestmark = pytest.mark.integration

#: the simulator's strict rule here: 10 calls in any 2 s window
RULE = {"rate_limit": 10, "rate_window_s": 2.0}
FAST = {"text_after_s": 0.3, "first_after_s": 0.6, "complete_after_s": 0.9}
POLLING_ONLY = {"callbacks_enabled": False}
WAIT_S = 120.0


@pytest.fixture
def kie(redis_server):
    """A kie-profile simulator of this test's own, with the suite's API key."""
    import os

    server = SimServer(SimConfig(profile="kie", api_key=os.environ["BACKBEAT_API_KEY"],
                                 poll_limit_per_s=1000, **FAST, **RULE)).start()
    yield server
    server.stop()


def kie_fleet(fleet, kie, prefix, **env):
    return fleet(prefix, BACKBEAT_PROVIDER="kie", BACKBEAT_API_BASE_URL=kie.url, **env)


def enqueue(f, count, tag):
    return [f.client.enqueue("add-instrumental", {
        "uploadUrl": "https://example.com/v.mp3", "title": f"{tag} {n}", "tags": "rock",
        "negativeTags": "metal"})["id"] for n in range(count)]


def calls(sim):
    return requests.get(f"{sim.url}/__calls", timeout=10).json()


def polls(sim):
    return requests.get(f"{sim.url}/__polls", timeout=10).json()


@pytest.mark.slow  # make test-all: keeps make test inside 15 minutes
def test_kie_throttle_in_a_200_body_slows_the_fleet_without_spending_retries(fleet, kie):
    """Given a limiter at 3x kie's real rule, expect kie's 429-in-a-200-body answers to slow
    the whole fleet, every job to succeed once and no job to spend its retry budget."""
    kie.set_knobs(**POLLING_ONLY)
    f = kie_fleet(fleet, kie, "kt", workers=3, BACKBEAT_SUBMIT_RATE="30/2s",
                  BACKBEAT_THROTTLE_COOLDOWN="0.5", BACKBEAT_MAX_ATTEMPTS="2")
    ids = enqueue(f, 40, "throttle")
    jobs = f.wait_all(ids, timeout=WAIT_S)
    assert [j["state"] for j in jobs] == ["succeeded"] * 40
    stats = kie.stats()
    assert stats["accepted"] == 40 and stats["duplicates_by_title"] == 0
    throttled = [c for c in calls(kie) if c["outcome"] == "throttled"]
    assert throttled and {c["code"] for c in throttled} == {429}  # kie's code, HTTP 200
    rt = Runtime(f.settings)
    state = rt.submit_limiter.state()
    assert 1 <= state["cuts"] <= state["throttles"] == len(throttled)
    assert all(rt.store.get(i).int("failures") == 0 for i in ids)


def test_kie_402_pauses_the_fleet_and_a_top_up_resumes_it(fleet, kie, redis):
    """Given an account with credits for 4 calls, expect kie's 402 to pause submissions fleet
    wide (jobs kept, queued and parked), the credit endpoint to show the balance, and the slow
    probe to resume every job once the account is topped up."""
    kie.set_knobs(**POLLING_ONLY, credits_balance=4, credit_cost=1)
    f = kie_fleet(fleet, kie, "kc", workers=2, BACKBEAT_SUBMIT_RATE="10/2s",
                  BACKBEAT_PAUSE_PROBE_INTERVAL="2")
    ids = enqueue(f, 12, "credits")
    lim = Runtime(f.settings).submit_limiter
    wait_until(lambda: lim.state()["pause"]["reason"] == "credits"
               and redis.zcard("kc:parked") >= 8, WAIT_S)
    assert kie.stats()["accepted"] == 4 and kie.stats()["credits"] >= 1
    credit = get_profile("kie").credit_path
    key = {"Authorization": f"Bearer {f.settings.api_key.reveal()}"}
    assert requests.get(kie.url + credit, headers=key, timeout=10).json()["data"] == 0
    assert sum(f.client.get(i)["state"] == "queued" for i in ids) == 8
    kie.set_knobs(credits_balance=100)  # topped up: the next probe succeeds
    jobs = f.wait_all(ids, timeout=WAIT_S)
    assert [j["state"] for j in jobs] == ["succeeded"] * 12
    assert kie.stats()["accepted"] == 12 and kie.stats()["duplicates_by_title"] == 0
    assert not lim.state()["pause"]["paused"]
    assert requests.get(kie.url + credit, headers=key, timeout=10).json()["data"] == 100 - 8


@pytest.mark.slow  # make test-all: keeps make test inside 15 minutes
def test_kie_455_opens_the_breaker_and_every_job_finishes(fleet, kie):
    """Given kie in maintenance (455), expect the breaker to trip repeatedly with one probe
    per interval and every job to finish once maintenance ends."""
    kie.set_knobs(**POLLING_ONLY, maintenance=True)
    f = kie_fleet(fleet, kie, "km", workers=2, BACKBEAT_SUBMIT_RATE="10/2s",
                  BACKBEAT_BREAKER_BASE="1", BACKBEAT_BREAKER_CAP="2",
                  BACKBEAT_POLL_INTERVAL="0.3")
    ids = enqueue(f, 10, "maint")
    rt = Runtime(f.settings)
    lim = rt.submit_limiter
    wait_until(lambda: lim.state()["breaker"]["trips"] >= 3, WAIT_S)
    kie.set_knobs(maintenance=False)
    jobs = f.wait_all(ids, timeout=WAIT_S)
    assert [j["state"] for j in jobs] == ["succeeded"] * 10
    hits = sorted(c["t"] for c in calls(kie) if c["code"] == 455)
    probes = [t for t in hits if t - hits[0] >= 0.9]
    gaps = [b - a for a, b in zip([hits[0], *probes], probes, strict=False)]
    assert probes and min(gaps) >= 0.9, gaps  # never two probes in one interval
    assert kie.stats()["accepted"] == 10 and kie.stats()["duplicates_by_title"] == 0
    assert all(rt.store.get(i).int("failures") == 0 for i in ids)


def test_polls_sharing_the_submit_window_keep_every_window_within_the_rule(fleet, kie):
    """Given a provider whose one rule counts record-info polls with create calls (the
    simulator's ``polls_count_in_window``) and BACKBEAT_POLLS_SHARE_SUBMIT_WINDOW=1, expect no
    window at the provider to hold more than the rule's calls of either kind, and nothing
    throttled. (With the setting off, the poll bucket adds its own calls: over the rule.)"""
    kie.set_knobs(**POLLING_ONLY, polls_count_in_window=True)
    f = kie_fleet(fleet, kie, "ks", workers=3, BACKBEAT_SUBMIT_RATE="10/2s",
                  BACKBEAT_SUBMIT_BURST="10", BACKBEAT_POLL_RATE="20/1s",
                  BACKBEAT_POLL_MIN_DELAY="0.5", BACKBEAT_POLL_MAX_DELAY="1",
                  BACKBEAT_POLL_INTERVAL="0.3", BACKBEAT_POLLS_SHARE_SUBMIT_WINDOW="1")
    ids = enqueue(f, 24, "shared")
    jobs = f.wait_all(ids, timeout=WAIT_S * 2)
    assert [j["state"] for j in jobs] == ["succeeded"] * 24
    made, asked = calls(kie), polls(kie)
    assert asked, "polls must be in the mix"
    arrivals = [c["t"] for c in made] + [p["t"] for p in asked]
    most = max_in_window(arrivals, RULE["rate_window_s"])
    stats = kie.stats()
    assert most <= RULE["rate_limit"], (most, stats)
    assert stats["throttled"] == 0 and stats["polls_throttled"] == 0, stats
    assert stats["accepted"] == 24 and stats["duplicates_by_title"] == 0
