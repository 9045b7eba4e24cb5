"""Fair shares between producers with real worker processes and the simulator over HTTP.

While producer ``flood`` has hundreds of jobs waiting, producer ``small`` enqueues 20: each of
them reaches the provider within its fair share (half the rate, equal weights), as predicted
at enqueue by its position (``Client.position``); under FIFO it would wait behind the flood.
"""

from __future__ import annotations

import statistics
from datetime import datetime

import pytest
import requests

from backbeat.workers import lanes
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState

pytestmark = pytest.mark.integration

LIMIT, WINDOW_S = 10, 2.0
RATE = LIMIT / WINDOW_S
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "tags": "rock", "negativeTags": "metal"}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def submitted_at(rt: Runtime, job_id: str) -> int | None:
    """The Redis time (ms) of the job's claim (its move to ``submitting``)."""
    for entry in rt.store.history(job_id):
        if entry.get("to") == JobState.SUBMITTING.value:
            return int(entry["t"])
    return None


def test_a_small_producer_is_served_at_its_share_behind_a_flood(fleet, sim, wait):
    sim.set_knobs(rate_limit=LIMIT, rate_window_s=WINDOW_S, callbacks_enabled=False)
    f = fleet("fs", workers=2, concurrency=2, BACKBEAT_SUBMIT_RATE=f"{LIMIT}/{WINDOW_S:g}s")
    rt = Runtime(f.settings)
    for i in range(200):
        f.client.enqueue("add-instrumental", {**PARAMS, "title": f"flood {i}"},
                         producer="flood")
    # a steady backlog: the flood has been submitting for a few windows
    wait(lambda: sim.stats()["accepted"] >= 3 * LIMIT, what="the flood under way")
    small, enqueued, predicted = [], [], []
    for i in range(20):
        job = f.client.enqueue("add-instrumental", {**PARAMS, "title": f"small {i}"},
                               producer="small")
        t = rt.store.now_ms()
        where = f.client.position(job["id"])
        assert where is not None and where["lane"] == "small", where
        small.append(job["id"])
        enqueued.append(t)
        predicted.append(datetime.fromisoformat(where["predicted_submit_at"]).timestamp()
                         * 1000 - t)
    waiting_flood = rt.redis.zcard(rt.keys.lane("flood"))
    wait(lambda: all(submitted_at(rt, j) for j in small), timeout=120,
         what="every small job submitted")
    actual = [submitted_at(rt, j) - t for j, t in zip(small, enqueued, strict=True)]
    fifo = [(waiting_flood + k) / RATE * 1000 for k in range(20)]  # behind the whole flood
    share = [(2 * (k + 1)) / RATE * 1000 for k in range(20)]  # half the rate, from now
    print(f"small jobs' waits (ms): actual {sorted(int(a) for a in actual)}; predicted "
          f"{sorted(int(p) for p in predicted)}; flood waiting {waiting_flood}")
    # within their fair share: the p95 wait at most 1.2 x what the share predicts (the
    # prediction counts the jobs already dispatched ahead of them as well as the lanes)
    assert p95(actual) <= 1.2 * p95(predicted), (p95(actual), p95(predicted))
    # the prediction is the share plus the head: what was dispatched before they came (the
    # queue's front, at most lanes.target, and the messages the 2 x 2 worker slots hold)
    head = lanes.target(rt) + 2 * 2 * 2
    assert p95(predicted) <= p95(share) + head * 1000 / RATE, (p95(predicted), p95(share))
    # far ahead of FIFO, which would make them wait behind the flood's backlog
    assert p95(actual) < 0.5 * p95(fifo), (p95(actual), p95(fifo))
    # each prediction within 20% of the real submission time (median error)
    errors = [abs(a - p) / p for a, p in zip(actual, predicted, strict=True)]
    print(f"prediction errors: median {statistics.median(errors):.1%}, "
          f"max {max(errors):.1%}")
    assert statistics.median(errors) <= 0.2, errors
    stats = requests.get(f"{sim.url}/__stats", timeout=10).json()
    assert stats["max_calls_in_window"] <= LIMIT and stats["duplicates_by_title"] == 0
