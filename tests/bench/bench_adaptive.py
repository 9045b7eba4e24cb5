"""Benchmark 3: adaptive convergence when backbeat is configured at 3x the provider's real rule.

The simulator enforces R (20 per 10 s; quick: 10 per 2 s); BACKBEAT_SUBMIT_RATE is 3R, so only
the throttle answers (AIMD in report.lua) can bring the fleet down to the real rule. 3 worker
processes x 2 slots work through a backlog. Reported: the share of create calls answered with
the throttle code (the simulator's /__stats), accepted and throttled calls per window with the
limiter's effective limit at each window's end, the limiter's state at the end, utilisation.
When the default Policy misses the goal, the same run is repeated with the knob that reaches it.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import Fleet, Log, Section, Stack, enqueue_backlog, per_window, table, wait_for

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.workers.runtime import Runtime

GOAL = "<= 10% of create calls throttled when configured at 3x the real limit"
TARGET = 0.10
WORKERS, SLOTS = 3, 2


def variants(window_s: float) -> list[tuple[str, dict[str, str]]]:
    """The default Policy, then a gentler cut for comparison (both always run)."""
    return [("default Policy (beta 0.7, cool-down 2 s)", {}),
            ("BACKBEAT_THROTTLE_BETA=0.5 (harder cut)", {"BACKBEAT_THROTTLE_BETA": "0.5"})]


def run_one(stack: Stack, idx: int, name: str, knobs: dict[str, str], limit: int, window_s: float,
            windows: int, log: Log) -> dict:
    prefix = f"ba{idx}"
    stack.clear_prefix(prefix)
    stack.sim.reset(rate_limit=limit, rate_window_s=window_s)
    env = stack.env(prefix, BACKBEAT_SUBMIT_RATE=f"{3 * limit}/{window_s:g}s",
                    BACKBEAT_SUBMIT_BURST="1", **knobs)
    client = Client(Settings.from_env(env))
    lim = Runtime(Settings.from_env(env)).submit_limiter
    effective: list[int] = []
    with Fleet(env, Path(stack.run_dir) / prefix, WORKERS, SLOTS):
        enqueue_backlog(client, limit * (windows + 3), prefix)
        wait_for(lambda: stack.sim.stats()["calls_total"] > 0, 60, "a first create call")
        t0 = stack.sim.calls()[0]["t"]
        for k in range(1, windows + 1):  # sample the limiter at each window's end
            end = t0 + k * window_s
            while time.monotonic() < end:
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            effective.append(lim.state()["effective_limit"])
        calls, stats, state = stack.sim.calls(), stack.sim.stats(), lim.state()
    stack.clear_prefix(prefix)
    in_run = [c for c in calls if c["t"] < t0 + windows * window_s]
    acc = per_window([c["t"] for c in in_run if c["outcome"] == "accepted"], t0, window_s,
                     windows)
    thr = per_window([c["t"] for c in in_run if c["outcome"] == "throttled"], t0, window_s,
                     windows)
    half = windows // 2
    return {
        "name": name, "acc": acc, "thr": thr, "eff": effective, "state": state,
        "share": stats["throttled"] / max(1, stats["calls_total"]),
        "throttled": stats["throttled"], "calls_total": stats["calls_total"],
        "util": sum(acc[1:]) / (limit * (windows - 1)),
        "util_late": sum(acc[half:]) / (limit * (windows - half)),
        "max_accepted": stats["max_accepted_in_window"],
    }


def run(stack: Stack, quick: bool, log: Log) -> Section:
    limit, window_s, windows = (10, 2.0, 20) if quick else (20, 10.0, 12)
    log(f"adaptive: simulator rule {limit} per {window_s:g} s; backbeat configured at "
        f"{3 * limit}/{window_s:g}s (3x), {WORKERS} workers x {SLOTS} slots, burst 1, "
        f"{windows} windows")
    results = []
    for idx, (name, knobs) in enumerate(variants(window_s)):
        r = run_one(stack, idx, name, knobs, limit, window_s, windows, log)
        results.append(r)
        s = r["state"]
        log(f"  {name}: throttled {r['throttled']} of {r['calls_total']} create calls "
            f"({r['share']:.1%}); utilisation {r['util']:.1%} (windows 2..{windows}), "
            f"{r['util_late']:.1%} (second half); cuts {s['cuts']}, throttles "
            f"{s['throttles']}, effective limit {s['effective_limit']} (factor {s['factor']})")
        log(f"    accepted per window  {r['acc']}")
        log(f"    throttled per window {r['thr']}")
        log(f"    effective limit at window end {r['eff']}")
    default_met = results[0]["share"] <= TARGET
    met = any(r["share"] <= TARGET for r in results)
    summary = table(
        ["policy", "create calls", "throttled", "throttled share", "utilisation (w2..end)",
         "utilisation (2nd half)", "cuts", "effective limit at end", "max accepted in a window"],
        [[r["name"], r["calls_total"], r["throttled"], f"{r['share']:.1%}", f"{r['util']:.1%}",
          f"{r['util_late']:.1%}", r["state"]["cuts"],
          f"{r['state']['effective_limit']} / {3 * limit} (rule {limit})",
          f"{r['max_accepted']} / {limit}"] for r in results])
    series = []
    for r in results:
        series += [f"Per window ({window_s:g} s each), {r['name']}:", "",
                   table(["window", *[str(k + 1) for k in range(windows)]],
                         [["accepted", *r["acc"]], ["throttled", *r["thr"]],
                          ["effective limit at end", *r["eff"]]]), ""]
    verdict = ("met with the default Policy" if default_met else
               "MISSED with the default Policy" + (f"; met with {results[-1]['name']}"
                                                   if met else "; not met by the knob tried"))
    body = "\n".join([
        f"Simulator rule **{limit} per {window_s:g} s**; BACKBEAT_SUBMIT_RATE="
        f"{3 * limit}/{window_s:g}s, burst 1, {WORKERS} worker processes x {SLOTS} slots, "
        f"{windows} windows from the first create call.", "",
        summary, "", *series,
        f"- goal ({GOAL}): **{verdict}**",
        "- throttled share = the simulator's throttle answers / all create calls it received "
        "during the configuration; utilisation = accepted / (rule limit x windows).",
    ])
    return Section("adaptive", "Adaptive convergence at 3x the real limit", GOAL, body,
                   met=default_met)
