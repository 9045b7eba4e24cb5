"""GET /metrics from the web process after a real run: a worker, beat and web against the
simulator, made to throttle, answer 455 maintenance and then run out of credits. Every
figure is checked against what the simulator itself saw, or against the jobs created.

Counts and states only, never durations (a shared, noisy machine).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from backbeat.provider.profiles import get_profile
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import ORDER

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "backbeat.json"
#: the simulator's rule for this run: 4 calls in any 2 s window; the fleet allows 3x that
SIM_RULE = {"rate_limit": 4, "rate_window_s": 2.0}
FLEET_ENV = {"BACKBEAT_SUBMIT_RATE": "12/2s", "BACKBEAT_THROTTLE_COOLDOWN": "0.3",
             "BACKBEAT_BREAKER_BASE": "1", "BACKBEAT_BREAKER_CAP": "2",
             "BACKBEAT_PAUSE_PROBE_INTERVAL": "600"}
#: bound for each phase's wait (the whole test runs in well under a minute when healthy)
PHASE_S = 45.0
THROTTLED_JOBS, MAINTENANCE_JOBS, PAUSED_JOBS = 8, 2, 2


def instrumental(title: str) -> dict[str, Any]:
    return {"uploadUrl": "https://example.com/v.mp3", "title": title, "tags": "rock",
            "negativeTags": "metal"}


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition; the parser raises on anything malformed."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def by_labels(samples: dict, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(dict(lab)[k] for k in labels): v for (n, lab), v in samples.items()
            if n == name}


def expected_calls(sim_url: str) -> dict[tuple[str, str], int]:
    """(purpose, outcome) -> calls, from the simulator's own logs: every create call's and
    every record-info poll's answer code, as the provider profile classifies it."""
    profile = get_profile("sunoapi")
    creates = requests.get(f"{sim_url}/__calls", timeout=10).json()
    polls = requests.get(f"{sim_url}/__polls", timeout=10).json()
    out = Counter(("submit", profile.outcome_for(c["code"]).value) for c in creates)
    out.update(("poll", profile.outcome_for(p["code"]).value) for p in polls)
    return dict(out)


@pytest.mark.timeout(240)
def test_metrics_after_a_run_that_throttles_trips_the_breaker_and_pauses(fleet, sim, wait):
    sim.set_knobs(**SIM_RULE)
    f = fleet("mx", workers=1, concurrency=4, web=True, **FLEET_ENV)
    web = f.env["BACKBEAT_CALLBACK_BASE_URL"]
    rt = Runtime(f.settings)
    lim, acct = rt.submit_limiter, rt.account

    # 1. too fast for the provider's rule: throttled, slowed down, every job done once
    ids = [f.client.enqueue("add-instrumental", instrumental(f"throttle {n}"))["id"]
           for n in range(THROTTLED_JOBS)]
    assert [j["state"] for j in f.wait_all(ids, timeout=PHASE_S * 2)] == (
        ["succeeded"] * THROTTLED_JOBS)
    assert sim.stats()["throttled"] >= 1, sim.stats()

    # 2. maintenance (455): the breaker opens; once it ends, the probe closes it
    sim.set_knobs(maintenance=True)
    more = [f.client.enqueue("add-instrumental", instrumental(f"maintenance {n}"))["id"]
            for n in range(MAINTENANCE_JOBS)]
    wait(lambda: lim.state()["breaker"]["trips"] >= 1, PHASE_S, "breaker trip")
    sim.set_knobs(maintenance=False)
    assert [j["state"] for j in f.wait_all(more, timeout=PHASE_S)] == (
        ["succeeded"] * MAINTENANCE_JOBS)
    ids += more

    # 3. out of credits: submissions pause fleet-wide; the jobs wait, queued and parked
    sim.set_knobs(credits_exhausted=True)
    held = [f.client.enqueue("add-instrumental", instrumental(f"credits {n}"))["id"]
            for n in range(PAUSED_JOBS)]
    ids += held
    wait(lambda: lim.state()["pause"]["reason"] == "credits"
         and all(rt.redis.zscore(rt.keys.parked, i) is not None for i in held)
         and all(f.client.get(i)["state"] == "queued" for i in held), PHASE_S, "pause")
    wait(lambda: {f.client.get(i)["state"] for i in ids} == {"succeeded", "queued"},
         PHASE_S, "every job finished or held")

    def scrape() -> tuple[requests.Response, dict]:
        answer = requests.get(f"{web}/metrics", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer, parse(answer.text)

    def counted() -> dict[tuple[str, str], float]:
        calls = by_labels(scrape()[1], "backbeat_provider_calls_total", "purpose", "outcome")
        return {k: v for k, v in calls.items() if v}

    # the last answers are reported just after the simulator logged them: wait for them
    try:
        wait(lambda: counted() == expected_calls(sim.url), 20, "calls reported")
    except TimeoutError:
        pass  # the assertion below shows the difference
    answer, samples = scrape()
    stats = sim.stats()
    calls = {k: v for k, v in by_labels(
        samples, "backbeat_provider_calls_total", "purpose", "outcome").items() if v}

    # provider calls by outcome: exactly what the simulator answered
    assert calls == expected_calls(sim.url), (calls, stats)
    assert calls[("submit", "accepted")] == stats["accepted"] == THROTTLED_JOBS + MAINTENANCE_JOBS
    assert calls[("submit", "throttled")] == stats["throttled"] >= 1
    assert calls[("submit", "maintenance")] == stats["maintenance"] >= 1
    assert calls[("submit", "credits")] == stats["credits"] >= 1
    assert sum(v for (p, _), v in calls.items() if p == "submit") == stats["calls_total"]
    assert sum(v for (p, _), v in calls.items() if p == "poll") == stats["polls"]

    one = lambda name, **labels: samples[(name, frozenset(labels.items()))]  # noqa: E731
    # the limiter: throttles as reported, the breaker tripped and closed again, the pause
    assert one("backbeat_throttles_total", account=acct, purpose="submit") == stats["throttled"]
    assert one("backbeat_rate_cuts_total", account=acct, purpose="submit") >= 1
    assert one("backbeat_breaker_trips_total", account=acct) >= 1
    assert one("backbeat_breaker_open", account=acct) == 0
    assert one("backbeat_paused", account=acct, reason="credits") == 1
    assert sum(v for (n, _), v in samples.items() if n == "backbeat_paused") == 1
    assert one("backbeat_pause_seconds", account=acct) > 0
    assert one("backbeat_limit", account=acct, purpose="submit") == 12
    assert one("backbeat_limit_window_seconds", account=acct, purpose="submit") == 2

    # the jobs: every one created is in exactly one state
    jobs = by_labels(samples, "backbeat_jobs", "state")
    assert set(jobs) == {(s.value,) for s in ORDER}
    assert sum(jobs.values()) == len(ids)
    assert jobs[("succeeded",)] == THROTTLED_JOBS + MAINTENANCE_JOBS
    assert jobs[("queued",)] == PAUSED_JOBS
    assert one("backbeat_parked_jobs") == PAUSED_JOBS
    assert one("backbeat_duplicate_upstream_tasks_total") == stats["duplicates_by_title"] == 0

    # clean exposition: HELP and TYPE before every family, only backbeat's own names
    lines = answer.text.splitlines()
    assert all(line.startswith(("# HELP backbeat_", "# TYPE backbeat_", "backbeat_"))
               for line in lines if line)
    typed = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    assert {line.split("{")[0].split()[0] for line in lines if not line.startswith("#")} <= typed

    # and the dashboard's queries name only what this exposition exports
    used = set(re.findall(r"\bbackbeat_[a-z0-9_]+", json.dumps(
        json.loads(DASHBOARD.read_text(encoding="utf-8")))))
    names = {n for n, _ in samples} | {n.removesuffix("_total") for n, _ in samples}
    # but the credit gauges, exported once a balance has been read: this run reads none
    # (BACKBEAT_CREDITS_INTERVAL=0 keeps its poll counts exact); test_credits_run.py scrapes them
    unread = {"backbeat_credits", "backbeat_credits_age_seconds"}
    assert not unread & names
    assert used and not used - names - unread, used - names
