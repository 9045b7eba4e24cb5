"""The credit balance read by real processes: a worker, two beats and web against the
simulator. Beat's ``backbeat.credits`` tick reads the balance through the poll bucket, the
gauge shows it at ``/metrics``, accepted submissions lower it by their cost, and two beats
still make one read per lease.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from backbeat.devstack.processes import Proc, beat_argv, worker_argv
from backbeat.tasks.credits import LEASE_SHARE
from backbeat.workers.runtime import Runtime

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
START, COST, JOBS = 1_000, 10, 3


def gauges(web: str, account: str) -> dict[str, float]:
    text = requests.get(f"{web}/metrics", timeout=10).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("backbeat_credits") and s.labels == {"account": account}}


def instrumental(title: str) -> dict[str, Any]:
    return {"uploadUrl": "https://example.com/v.mp3", "title": title, "tags": "rock",
            "negativeTags": "metal"}


@pytest.mark.slow  # make test-all; tests/unit/test_credits.py covers the read on real Redis
@pytest.mark.timeout(240)
def test_beat_reads_the_balance_and_it_drops_by_the_cost_of_each_job(fleet, sim, wait):
    sim.set_knobs(credits_balance=START, credit_cost=COST)
    f = fleet("crx", workers=0, web=True, BACKBEAT_CREDITS_INTERVAL=str(INTERVAL_S))
    worker = Proc.start("worker0", worker_argv("crx0", 2), f.env, f.run_dir)
    f.procs.append(worker)
    worker.wait_for_log("ready.", 90)
    web, account = f.env["BACKBEAT_CALLBACK_BASE_URL"], Runtime(f.settings).account

    # 1. the tick reads the balance: the gauge shows it, with its age
    wait(lambda: gauges(web, account).get("backbeat_credits") == START, 60, "first read")
    assert 0 <= gauges(web, account)["backbeat_credits_age_seconds"] < 30
    assert f.client.limiter()["credits"]["balance"] == START

    # 2. each accepted submission costs COST: the next reads show it
    ids = [f.client.enqueue("add-instrumental", instrumental(f"credits {n}"))["id"]
           for n in range(JOBS)]
    assert [j["state"] for j in f.wait_all(ids)] == ["succeeded"] * JOBS
    wait(lambda: gauges(web, account).get("backbeat_credits") == START - JOBS * COST, 60,
         "balance after the jobs")
    assert sim.stats()["credits_charged"] == JOBS * COST

    # 3. a second beat doubles the ticks, not the reads: one per lease fleet-wide
    second = Proc.start("beat2", beat_argv(f.run_dir / "beat2-schedule"), f.env, f.run_dir)
    f.procs.append(second)
    second.wait_for_log("beat: Starting...", 90)
    before, began = sim.stats()["credit_checks"], time.monotonic()
    time.sleep(12)
    reads, elapsed = sim.stats()["credit_checks"] - before, time.monotonic() - began
    assert 3 <= reads <= elapsed / (INTERVAL_S * LEASE_SHARE) + 1, (reads, elapsed)

    # every read went through the poll bucket and was reported: the poll answers counted
    # are the simulator's record-info polls plus its credit calls
    def poll_calls() -> float:
        text = requests.get(f"{web}/metrics", timeout=10).text
        return sum(s.value for fam in text_string_to_metric_families(text)
                   for s in fam.samples if s.name == "backbeat_provider_calls_total"
                   and s.labels.get("purpose") == "poll")

    def seen() -> int:
        stats = sim.stats()
        return stats["polls"] + stats["credit_checks"]

    wait(lambda: poll_calls() == seen(), 20, "every poll-bucket call reported")
    assert "Received unregistered task" not in f.logs()
