"""Benchmark 2: utilisation of the provider's rule under a backlog, with 1, 2, 4, 8 workers.

The simulator enforces its strict sliding window (20 calls in any 10 s, like the provider; the
quick mode uses 10 per 2 s); backbeat is configured with exactly that rule. Each configuration
gets its own key prefix, an emptied simulator ledger, its own worker processes and beat, and a
backlog larger than the run can finish. Everything is counted from the simulator's ledger
(monotonic arrival times of create calls):

- utilisation = accepted calls in the steady interval / (limit x windows in it); the steady
  interval starts one window after the first create call;
- violations = create calls (any answer) whose trailing window already held the limit (exact
  two-pointer over every arrival of the configuration), plus the simulator's throttle count.
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

GOAL = "utilisation >= 95% of the provider's rule with 0 violations, for 1, 2, 4 and 8 workers"
TARGET = 0.95


def configs(quick: bool) -> list[tuple[int, int, int]]:
    """(workers, concurrency per worker, burst). 8 processes use 1 slot each (2 cores)."""
    out = []
    for n in (1, 2, 4, 8):
        conc = 1 if n == 8 else 2
        out.append((n, conc, 1))
        if not quick and n > 1:
            out.append((n, conc, n))
    return out


def run_one(stack: Stack, workers: int, conc: int, burst: int, limit: int, window_s: float,
            skip: int, measure: int, log: Log) -> dict:
    prefix = f"bu{workers}x{conc}b{burst}"
    stack.clear_prefix(prefix)
    stack.sim.reset(rate_limit=limit, rate_window_s=window_s)
    env = stack.env(prefix, BACKBEAT_SUBMIT_RATE=f"{limit}/{window_s:g}s",
                    BACKBEAT_SUBMIT_BURST=str(burst))
    backlog = limit * (skip + measure + 3)
    with Fleet(env, Path(stack.run_dir) / prefix, workers, conc):
        enqueue_backlog(Client(Settings.from_env(env)), backlog, prefix)
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
        "workers": workers, "conc": conc, "burst": burst, "backlog": backlog,
        "steady": steady, "util": sum(steady) / (limit * measure),
        "slot_util": window_s / (sum(gaps) / len(gaps)) if gaps else 0.0,
        "max_window": max_in_window(times, window_s),
        "violations": over_limit(times, window_s, limit),
        "throttled": stats["throttled"], "calls": len(calls),
        "first_window": per_window(accepted, t0, window_s, 1)[0],
    }


def run(stack: Stack, quick: bool, log: Log) -> Section:
    limit, window_s, skip, measure = (10, 2.0, 1, 5) if quick else (20, 10.0, 1, 4)
    log(f"utilisation: simulator rule {limit} per {window_s:g} s, backbeat "
        f"BACKBEAT_SUBMIT_RATE={limit}/{window_s:g}s; steady interval = windows "
        f"{skip + 1}..{skip + measure} after the first create call")
    results = []
    for workers, conc, burst in configs(quick):
        r = run_one(stack, workers, conc, burst, limit, window_s, skip, measure, log)
        results.append(r)
        log(f"  {workers} worker(s) x {conc}, burst {burst}: accepted per window {r['steady']}"
            f" -> {r['util']:.1%} (W / mean gap from call i to i+N: {r['slot_util']:.1%}); "
            f"max calls in any {window_s:g} s = {r['max_window']}; "
            f"violations {r['violations']}; throttled {r['throttled']} of {r['calls']} calls")
    base = results[0]["util"]
    rows = [[f"{r['workers']} x {r['conc']}", r["burst"], r["backlog"],
             " ".join(map(str, r["steady"])), f"{sum(r['steady'])} / {limit * measure}",
             f"{r['util']:.1%}", f"{r['slot_util']:.1%}", f"{r['util'] / base:.2f}x",
             f"{r['max_window']} / {limit}",
             r["violations"], r["throttled"]] for r in results]
    met = all(r["util"] >= TARGET and r["violations"] == 0 and r["throttled"] == 0
              for r in results)
    misses = [f"{r['workers']} x {r['conc']} burst {r['burst']}" for r in results
              if not (r["util"] >= TARGET and r["violations"] == 0 and r["throttled"] == 0)]
    body = "\n".join([
        f"Simulator rule and BACKBEAT_SUBMIT_RATE: **{limit} per {window_s:g} s**. Steady "
        f"interval: {measure} windows ({measure * window_s:g} s), starting one window after "
        "the first create call. Concurrency = Celery prefork slots per worker process.",
        "",
        table(["workers x slots", "burst", "backlog", "accepted per window",
               "accepted / rule", "utilisation", "W / gap(i, i+N)", "vs 1 worker",
               "max calls in any window",
               "violations", "throttled"], rows),
        "",
        f"- goal ({GOAL}): **{'met' if met else 'MISSED: ' + ', '.join(misses)}**",
        "- violations: create calls (any answer) arriving when their trailing window already "
        "held the limit, exact over every call of the configuration (the first window "
        "included); throttled: the simulator's own count of its throttle answers.",
        "- W / gap(i, i+N): the bin-free figure. Call i and call i+N hold the same place in "
        "successive windows, so their mean gap is W at 100% of the rule.",
        "- the limiter's ceiling is a little under 100%: a call counts until its answer (the "
        "latest moment the provider can have stamped it), and every window is widened by a "
        f"safety margin (max(20 ms, 0.5% of W) = {max(20, int(window_s * 5)):d} ms).",
    ])
    return Section("utilisation", "Utilisation of the provider rule under backlog", GOAL, body,
                   met=met)
