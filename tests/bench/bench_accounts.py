"""Benchmark: throughput scales with provider accounts (1, 2 and 4 keys in one pool).

One simulator process accepts four API keys, each with its own strict window (the provider's
rule: 20 calls in any 10 s; the quick mode uses 10 per 2 s), and checks each key's window on
its own. backbeat gets ``BACKBEAT_ACCOUNTS`` with N of those keys, each at exactly that rule,
and a backlog larger than the run can finish; the same workers (2 processes x 4 slots) for
every N. Everything is counted from the simulator's ledger (arrival times and the key of every
create call):

- accepted per window, all keys together, over the steady interval (starting one window after
  the first create call) / (N x the rule x windows): the pool's share of what N accounts allow;
- per key: the most calls in any window (exact, two pointers over its arrivals) and the calls
  that arrived when their key's trailing window already held the rule (violations).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from common import (
    Fleet,
    Log,
    Section,
    SimProcess,
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

GOAL = ("accepted >= 0.95 x N x one account's rule under backlog with 1, 2 and 4 accounts, "
        "and 0 windows over any key's rule (counted per key at the simulator)")
TARGET = 0.95
POOL = (1, 2, 4)
WORKERS, SLOTS = 2, 4


def run_one(stack: Stack, sim: SimProcess, keys: list[str], n: int, limit: int,
            window_s: float, skip: int, measure: int) -> dict:
    prefix = f"ba{n}"
    stack.clear_prefix(prefix)
    sim.reset(rate_limit=limit, rate_window_s=window_s)
    pool = [{"name": f"acct{i}", "api_key": keys[i], "base_url": sim.url,
             "submit_rate": f"{limit}/{window_s:g}s"} for i in range(n)]
    env = stack.env(prefix, BACKBEAT_ACCOUNTS=json.dumps(pool),
                    BACKBEAT_SUBMIT_RATE=f"{limit}/{window_s:g}s")
    backlog = n * limit * (skip + measure + 3)
    with Fleet(env, Path(stack.run_dir) / prefix, WORKERS, SLOTS):
        enqueue_backlog(Client(Settings.from_env(env)), backlog, prefix)
        wait_for(lambda: sim.stats()["calls_total"] > 0, 60, "a first create call")
        t0 = sim.calls()[0]["t"]
        end = t0 + (skip + measure) * window_s + 0.5
        while time.monotonic() < end:  # bounded by ``end``
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        calls, stats = sim.calls(), sim.stats()
    stack.clear_prefix(prefix)
    accepted = [c["t"] for c in calls if c["outcome"] == "accepted"]
    steady = per_window(accepted, t0 + skip * window_s, window_s, measure)
    masked = [f"...{k[-4:]}" for k in keys[:n]]
    per_key = {m: [c["t"] for c in calls if c.get("key") == m] for m in masked}
    return {
        "n": n, "backlog": backlog, "steady": steady,
        "ratio": sum(steady) / (n * limit * measure),
        "per_key_max": [max_in_window(per_key[m], window_s) for m in masked],
        "per_key_share": [sum(1 for c in calls if c.get("key") == m
                              and c["outcome"] == "accepted") for m in masked],
        "violations": sum(over_limit(per_key[m], window_s, limit) for m in masked),
        "throttled": stats["throttled"], "calls": len(calls),
        "sim_max": [stats["by_key"][m]["max_calls_in_window"] for m in masked],
    }


def run(stack: Stack, quick: bool, log: Log) -> Section:
    limit, window_s, skip, measure = (10, 2.0, 1, 4) if quick else (20, 10.0, 1, 4)
    keys = [f"sk-bench-pool-{secrets.token_hex(6)}-{str(i) * 4}" for i in range(max(POOL))]
    log(f"accounts: each key's rule {limit} per {window_s:g} s (its own window at the "
        f"simulator); {WORKERS} worker processes x {SLOTS} slots for every pool size")
    results = []
    sim = SimProcess(Path(stack.run_dir), keys[0], *keys[1:])
    try:
        for n in POOL:
            r = run_one(stack, sim, keys, n, limit, window_s, skip, measure)
            results.append(r)
            log(f"  {n} account(s): accepted per window {r['steady']} -> {r['ratio']:.1%} of "
                f"{n} x the rule; per key accepted {r['per_key_share']}, max calls in any "
                f"window {r['per_key_max']} (simulator: {r['sim_max']}); violations "
                f"{r['violations']}; throttled {r['throttled']} of {r['calls']} calls")
    finally:
        sim.stop()
    base = sum(results[0]["steady"])
    rows = [[r["n"], r["backlog"], " ".join(map(str, r["steady"])),
             f"{sum(r['steady'])} / {r['n'] * limit * measure}", f"{r['ratio']:.1%}",
             f"{sum(r['steady']) / base:.2f}x", " ".join(map(str, r["per_key_max"])),
             r["violations"], r["throttled"]] for r in results]
    ok = [r["ratio"] >= TARGET and r["violations"] == 0 and r["throttled"] == 0
          and max(r["sim_max"]) <= limit for r in results]
    met = all(ok)
    body = "\n".join([
        f"Each key's rule at the simulator and in `BACKBEAT_ACCOUNTS`: **{limit} per "
        f"{window_s:g} s**. {WORKERS} worker processes x {SLOTS} slots for every pool size. "
        f"Steady interval: {measure} windows ({measure * window_s:g} s), starting one window "
        "after the first create call.",
        "",
        table(["accounts", "backlog", "accepted per window (all keys)",
               "accepted / (N x rule)", "share of N x rule", "vs 1 account",
               "max calls in any window, per key", "violations", "throttled"], rows),
        "",
        f"- goal ({GOAL}): **{'met' if met else 'MISSED'}**",
        "- per key: the simulator keeps one window per API key and counts its calls on "
        "their own (`/__stats` `by_key`); violations are calls that arrived when their key's "
        "trailing window already held the rule, exact over every call of the run.",
        "- the ceiling is a little under 100% for the same reasons as one account (a call "
        "counts until its answer; each window is widened by its safety margin).",
    ])
    return Section("accounts", "Throughput with several provider accounts", GOAL, body,
                   met=met)
