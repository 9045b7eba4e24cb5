"""Benchmark 2: fleet scaling: utilisation of a rule one worker process cannot saturate, with
1, 2, 4 and 8 worker processes.

The simulator enforces a strict sliding window of 200 calls in any 10 s (quick: 100 per 5 s;
20 calls/s either way) and answers every call after 300 ms (``latency_ms``, stamped on arrival);
backbeat is configured with exactly that rule (burst 1). Every worker process has 2 Celery
prefork slots, so a fleet keeps at most 2 x processes calls in flight and can carry about
2 x processes / 0.3 s calls per second: 1 process ~6.7/s (a third of the rule), 2 ~13/s,
4 ~27/s and 8 ~53/s (both above it). Polls are pushed out of the run (first poll after 600 s)
so the slots only submit. Each fleet size gets its own key prefix, an emptied simulator ledger,
its own worker processes and beat, and a backlog larger than the run can finish. Everything is
counted from the simulator's ledger (monotonic arrival times of create calls):

- utilisation = accepted calls in the steady interval / (limit x windows in it); the steady
  interval starts one window after the first create call;
- windows over = create calls (any answer) whose trailing window already held the limit (exact
  two-pointer over every arrival of the configuration), plus the simulator's throttle count;
- worst window = the most calls in any window of W seconds (exact, every arrival).

2 cores carry all of it (8 processes are 16 prefork children + beat), so the arms are short:
one warm-up window and 4 measured windows of 10 s (quick: 1 + 3 of 5 s).
"""

from __future__ import annotations

import time
from pathlib import Path

from common import (
    Fleet,
    Log,
    Section,
    Stack,
    enqueue_backlog,
    over_limit,
    per_window,
    table,
    wait_for,
)

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.simulator.ledger import max_in_window

GOAL = ("0 calls over the rule and 0 throttled with 1, 2, 4 and 8 worker processes; "
        "utilisation grows with processes (2 >= 1.8x of 1) and reaches >= 95% of the "
        "limiter's ceiling once the fleet's slots can carry the rule (4 and 8 processes)")
TARGET = 0.95
SCALE_2 = 1.8
SLOTS = 2
LATENCY_MS = 300
PROCESSES = (1, 2, 4, 8)


def ceiling(window_s: float) -> float:
    """The most of the rule the limiter grants by design: a call counts from its answer (the
    latest moment the provider can have stamped it; here LATENCY_MS after its arrival), for
    W plus the safety margin, so a steady stream gets W / (W + latency + margin)."""
    margin_s = max(20, int(window_s * 5)) / 1000
    return window_s / (window_s + LATENCY_MS / 1000 + margin_s)


def capacity(workers: int) -> float:
    """Calls per second the fleet's slots can carry at the provider's latency."""
    return workers * SLOTS / (LATENCY_MS / 1000)


def run_one(stack: Stack, workers: int, limit: int, window_s: float, skip: int, measure: int,
            log: Log) -> dict:
    prefix = f"bu{workers}x{SLOTS}"
    stack.clear_prefix(prefix)
    stack.sim.reset(rate_limit=limit, rate_window_s=window_s, latency_ms=LATENCY_MS)
    env = stack.env(prefix, BACKBEAT_SUBMIT_RATE=f"{limit}/{window_s:g}s",
                    BACKBEAT_SUBMIT_BURST="1", BACKBEAT_POLL_MIN_DELAY="600",
                    BACKBEAT_POLL_MAX_DELAY="600")
    backlog = limit * (skip + measure + 2)
    enqueue_backlog(Client(Settings.from_env(env)), backlog, prefix)
    with Fleet(env, Path(stack.run_dir) / prefix, workers, SLOTS):
        wait_for(lambda: stack.sim.stats()["calls_total"] > 0, 60, "a first create call")
        t0 = stack.sim.calls()[0]["t"]
        end = t0 + (skip + measure) * window_s + 0.5
        while time.monotonic() < end:  # bounded by ``end``
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        calls, stats = stack.sim.calls(), stack.sim.stats()
    stack.clear_prefix(prefix)
    times = [c["t"] for c in calls]
    accepted = [c["t"] for c in calls if c["outcome"] == "accepted"]
    steady = per_window(accepted, t0 + skip * window_s, window_s, measure)
    lo, hi = t0 + skip * window_s, t0 + (skip + measure) * window_s
    in_steady = [t for t in accepted if lo <= t < hi]
    # bin-free: a call and the one N calls later use the same place in the window, so the
    # rule is met at 100% when they are exactly W apart
    gaps = [b - a for a, b in zip(in_steady, in_steady[limit:], strict=False)]
    return {
        "workers": workers, "backlog": backlog,
        "steady": steady, "util": sum(steady) / (limit * measure),
        "slot_util": window_s / (sum(gaps) / len(gaps)) if gaps else None,
        "max_window": max_in_window(times, window_s),
        "violations": over_limit(times, window_s, limit),
        "throttled": stats["throttled"], "calls": len(calls),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def run(stack: Stack, quick: bool, log: Log) -> Section:
    limit, window_s, skip, measure = (100, 5.0, 1, 3) if quick else (200, 10.0, 1, 4)
    rate, top = limit / window_s, ceiling(window_s)
    log(f"utilisation: simulator rule {limit} per {window_s:g} s ({rate:g}/s), latency "
        f"{LATENCY_MS} ms, backbeat BACKBEAT_SUBMIT_RATE={limit}/{window_s:g}s; {SLOTS} slots "
        f"per process; limiter ceiling {top:.1%}; steady interval = windows "
        f"{skip + 1}..{skip + measure} after the first create call")
    results = []
    for workers in PROCESSES:
        r = run_one(stack, workers, limit, window_s, skip, measure, log)
        results.append(r)
        log(f"  {workers} process(es) x {SLOTS} (carry ~{capacity(workers):.1f}/s): accepted "
            f"per window {r['steady']} -> {r['util']:.1%} of the rule, "
            f"{r['util'] / top:.1%} of the ceiling (W / mean gap from call i to i+N: "
            f"{_pct(r['slot_util'])}); max calls in any {window_s:g} s = {r['max_window']}; "
            f"over {r['violations']}; throttled {r['throttled']} of {r['calls']} calls")
    base = results[0]["util"] or 1e-9
    by = {r["workers"]: r for r in results}
    rows = [[f"{r['workers']} x {SLOTS}", f"{capacity(r['workers']):.1f}/s",
             f"{min(top, capacity(r['workers']) / rate):.1%}",
             " ".join(map(str, r["steady"])), f"{sum(r['steady'])} / {limit * measure}",
             f"**{r['util']:.1%}**", f"{r['util'] / top:.1%}", _pct(r["slot_util"]),
             f"{r['util'] / base:.2f}x", f"{r['max_window']} / {limit}", r["violations"],
             r["throttled"]] for r in results]
    misses = [f"{r['workers']} processes: {r['violations']} over, {r['throttled']} throttled"
              for r in results if r["violations"] or r["throttled"]]
    misses += [f"{n} processes at {by[n]['util'] / top:.1%} of the ceiling" for n in (4, 8)
               if by[n]["util"] < TARGET * top]
    if by[2]["util"] < SCALE_2 * by[1]["util"]:
        misses.append(f"2 processes only {by[2]['util'] / base:.2f}x of 1")
    met = not misses
    body = "\n".join([
        f"Simulator rule and BACKBEAT_SUBMIT_RATE: **{limit} per {window_s:g} s** "
        f"({rate:g} calls/s), burst 1; the simulator answers every call after **{LATENCY_MS} "
        f"ms**; **{SLOTS} prefork slots per worker process**, so one process carries at most "
        f"~{capacity(1):.1f} calls/s and cannot saturate the rule. Steady interval: {measure} "
        f"windows ({measure * window_s:g} s), starting one window after the first create call "
        "(2 cores carry the whole fleet, so the arms are short). Polls are pushed past the "
        "run (first poll after 600 s): the slots only submit.",
        "",
        table(["processes x slots", "slots / latency", "expected", "accepted per window",
               "accepted / rule", "utilisation", "of the limiter's ceiling",
               "W / gap(i, i+N)", "vs 1 process", "worst window", "calls over the rule",
               "throttled"], rows),
        "",
        f"- goal ({GOAL}): **{'met' if met else 'MISSED: ' + ', '.join(misses)}**",
        f"- the limiter's ceiling here is **{top:.1%}** of the rule, by design: a call counts "
        "in the limiter's window from its answer (the latest moment the provider can have "
        f"stamped it, {LATENCY_MS} ms after its arrival here), for W plus a safety margin "
        f"(max(20 ms, 0.5% of W) = {max(20, int(window_s * 5)):d} ms), so a steady stream "
        f"gets W / (W + latency + margin) = {window_s:g} / "
        f"({window_s:g} + {LATENCY_MS / 1000:g} + {max(20, int(window_s * 5)) / 1000:g}).",
        "- expected = min(ceiling, slots / latency / rule): what the slots alone allow, before "
        "any overhead (each call's own Redis and HTTP work in the worker, 2 cores).",
        "- calls over the rule: create calls (any answer) arriving when their trailing window "
        "already held the limit, exact over every call of the configuration (the first window "
        "included); worst window: the most calls in any W seconds; throttled: the "
        "simulator's own count of its throttle answers.",
        "- W / gap(i, i+N): the bin-free figure. Call i and call i+N hold the same place in "
        "successive windows, so their mean gap is W at 100% of the rule (n/a: fewer than N "
        "calls in the steady interval).",
    ])
    return Section("utilisation", "Fleet scaling: utilisation of a rule one process cannot "
                   "saturate", GOAL, body, met=met)
