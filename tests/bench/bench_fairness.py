"""Benchmark: fair shares between producers against FIFO, measured in one run.

Producer ``flood`` enqueues a backlog; once it has been submitting for a few windows, producer
``small`` enqueues 20 jobs. Each small job's wait is the time from its enqueue to its claim
(its move to ``submitting``, on the Redis clock, just before its create call). Two arms, the
same workers, rule and jobs:

- **lanes** (backbeat): ``Client.enqueue(..., producer=...)``: under backlog each job waits in
  its producer's lane and the pump serves the lanes by deficit round robin (equal weights);
  each small job's predicted submission time is read at enqueue (``Client.position``);
- **FIFO** (what one Celery queue does): the same jobs, each sent to the broker the moment it
  is created (``send_submit``), so the small jobs wait behind the flood's messages.

The share predicts for the k-th small job (k = 1..20) a wait of head + 2k calls at the rule's
rate (half the rate each, while both producers have jobs), head being the jobs dispatched
before it came.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime
from pathlib import Path

from common import Fleet, Log, Section, Stack, table, wait_for

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.workers.dispatch import send_submit
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState

GOAL = ("while one producer floods, a second producer's 20 jobs wait at most 1.2 x what their "
        "fair share predicts (p95), far less than behind FIFO; predictions within 20% (median)")
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "tags": "rock", "negativeTags": "metal"}
SMALL = 20


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def claimed_at(rt: Runtime, job_id: str) -> int | None:
    for entry in rt.store.history(job_id):
        if entry.get("to") == JobState.SUBMITTING.value:
            return int(entry["t"])
    return None


def fifo_enqueue(rt: Runtime, title: str, producer: str) -> str:
    """What one Celery queue does: create the job and send its message at once."""
    job, _ = rt.store.create(uuid.uuid4().hex, "add-instrumental", {**PARAMS, "title": title},
                             producer=producer)
    send_submit(rt.settings, job.id)
    rt.store.dispatched(job.id)
    return job.id


def run_arm(stack: Stack, arm: str, limit: int, window_s: float, flood: int) -> dict:
    prefix = f"bf{arm}"
    stack.clear_prefix(prefix)
    stack.sim.reset(rate_limit=limit, rate_window_s=window_s)
    env = stack.env(prefix, BACKBEAT_SUBMIT_RATE=f"{limit}/{window_s:g}s")
    settings = Settings.from_env(env)
    rt, client = Runtime(settings), Client(settings)
    rate = limit / window_s
    with Fleet(env, Path(stack.run_dir) / prefix, 2, 2):
        for i in range(flood):
            title = f"{prefix} flood {i}"
            if arm == "lanes":
                client.enqueue("add-instrumental", {**PARAMS, "title": title}, producer="flood")
            else:
                fifo_enqueue(rt, title, "flood")
        wait_for(lambda: stack.sim.stats()["accepted"] >= 3 * limit, 300, "a steady backlog")
        ids, enqueued, predicted = [], [], []
        for i in range(SMALL):
            title = f"{prefix} small {i}"
            if arm == "lanes":
                job_id = client.enqueue("add-instrumental", {**PARAMS, "title": title},
                                        producer="small")["id"]
            else:
                job_id = fifo_enqueue(rt, title, "small")
            t = rt.store.now_ms()
            ids.append(job_id)
            enqueued.append(t)
            where = client.position(job_id) if arm == "lanes" else None
            if where and where["predicted_submit_at"]:
                predicted.append(datetime.fromisoformat(where["predicted_submit_at"])
                                 .timestamp() * 1000 - t)
        wait_for(lambda: all(claimed_at(rt, j) for j in ids),
                 (flood + SMALL) / rate * 2 + 120, "every small job claimed")
        waits = [claimed_at(rt, j) - t for j, t in zip(ids, enqueued, strict=True)]
        accepted = stack.sim.stats()["accepted"]
    stack.clear_prefix(prefix)
    return {"arm": arm, "waits": waits, "predicted": predicted, "accepted": accepted}


def run(stack: Stack, quick: bool, log: Log) -> Section:
    limit, window_s, flood = (10, 2.0, 200) if quick else (20, 10.0, 160)
    rate = limit / window_s
    log(f"fairness: rule {limit} per {window_s:g} s; producer flood enqueues {flood}, then "
        f"producer small enqueues {SMALL}; 2 workers x 2 slots; equal weights")
    results = {}
    for arm in ("lanes", "fifo"):
        started = time.monotonic()
        r = run_arm(stack, arm, limit, window_s, flood)
        results[arm] = r
        log(f"  {arm}: small jobs' waits (s) p50 {statistics.median(r['waits']) / 1000:.1f}, "
            f"p95 {p95(r['waits']) / 1000:.1f}, max {max(r['waits']) / 1000:.1f}"
            + (f"; predicted p95 {p95(r['predicted']) / 1000:.1f}" if r["predicted"] else "")
            + f" ({time.monotonic() - started:.0f} s)")
    lanes, fifo = results["lanes"], results["fifo"]
    share = [(2 * (k + 1)) / rate * 1000 for k in range(SMALL)]
    errors = [abs(a - p) / p for a, p in zip(lanes["waits"], lanes["predicted"], strict=True)]
    ratio = p95(lanes["waits"]) / p95(lanes["predicted"])
    vs_fifo = p95(lanes["waits"]) / p95(fifo["waits"])
    met = ratio <= 1.2 and statistics.median(errors) <= 0.2 and vs_fifo < 0.5
    rows = [[arm, f"{statistics.median(r['waits']) / 1000:.1f}",
             f"{p95(r['waits']) / 1000:.1f}", f"{max(r['waits']) / 1000:.1f}",
             f"{p95(r['waits']) / p95(fifo['waits']):.2f}x"]
            for arm, r in (("lanes (backbeat)", lanes), ("FIFO (one Celery queue)", fifo))]
    body = "\n".join([
        f"Rule {limit} per {window_s:g} s ({rate:g} calls/s); producer `flood` enqueues "
        f"{flood} jobs, and once it has been submitting for three windows producer `small` "
        f"enqueues {SMALL}. Wait = enqueue to claim (Redis clock). Same workers (2 x 2 slots), "
        "same rule, same jobs in both arms.",
        "",
        table(["arm", "small p50 wait (s)", "small p95 wait (s)", "small max wait (s)",
               "p95 vs FIFO"], rows),
        "",
        f"- the share alone predicts a p95 of {p95(share) / 1000:.1f} s (half the rate from "
        f"enqueue); backbeat's prediction at enqueue (`Client.position`, which adds the jobs "
        f"already dispatched) had p95 {p95(lanes['predicted']) / 1000:.1f} s: measured p95 / "
        f"predicted p95 = **{ratio:.2f}** (goal <= 1.2)",
        f"- prediction error per job (|actual - predicted| / predicted): median "
        f"**{statistics.median(errors):.1%}**, max {max(errors):.1%}",
        f"- p95 wait with lanes / with FIFO: **{vs_fifo:.2f}**",
        f"- goal ({GOAL}): **{'met' if met else 'MISSED'}**",
    ])
    return Section("fairness", "Fair shares between producers vs FIFO", GOAL, body, met=met)
