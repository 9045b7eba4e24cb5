"""Benchmark 4: what a paused backlog of 100,000 parked jobs costs Redis, per second.

The account is paused (``Limiter.pause()``); 2 worker processes (2 slots each) and a beat run
with the default BACKBEAT_POLL_INTERVAL (2 s: a pump and a reconcile every 2 s). Rounds
alternate *idle* (no parked job) and *loaded* (100,000 members ZADDed to ``<prefix>:parked``,
as tests/integration/test_limiter_fleet.py does, outside the measured interval); each measure is
the ``INFO commandstats`` delta over the interval. Our own INFO calls are left out.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from common import Fleet, Log, Section, Stack, table

from backbeat.api.client import Client
from backbeat.config.settings import Settings

GOAL = "a paused backlog of 100k jobs costs ~the same Redis commands/s as no backlog"
PARKED = 100_000
#: loaded / idle commands per second must stay under this (noise allowance)
TARGET_RATIO = 1.10


def snapshot(stack: Stack) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"]
            for k, v in stack.redis.info("commandstats").items()}


def measure(stack: Stack, seconds: float) -> dict[str, float]:
    before = snapshot(stack)
    time.sleep(seconds)
    after = snapshot(stack)
    rates = {k: (after[k] - before.get(k, 0)) / seconds for k in after
             if k != "info" and after[k] != before.get(k, 0)}
    rates["total"] = sum(rates.values())
    return rates


def fill(stack: Stack, key: str) -> None:
    pipe = stack.redis.pipeline(transaction=False)
    for start in range(0, PARKED, 1000):
        pipe.zadd(key, {f"job-{n}": n for n in range(start, start + 1000)})
    pipe.execute()


def run(stack: Stack, quick: bool, log: Log) -> Section:
    rounds, seconds = (1, 5.0) if quick else (2, 10.0)
    prefix = "bp"
    stack.clear_prefix(prefix)
    stack.sim.reset()
    env = stack.env(prefix, BACKBEAT_POLL_INTERVAL="2")
    client = Client(Settings.from_env(env))
    client.rt.submit_limiter.pause("bench")
    parked = client.rt.keys.parked
    log(f"paused backlog: 2 workers x 2 slots + beat, poll interval 2 s, {rounds} rounds of "
        f"idle / loaded ({PARKED:,} parked), {seconds:g} s each")
    idle, loaded, checks = [], [], []
    with Fleet(env, Path(stack.run_dir) / prefix, 2, 2):
        time.sleep(4)  # the fleet's idle loop settles (first beats sent)
        for r in range(rounds):
            stack.redis.delete(parked)
            time.sleep(1)
            idle.append(measure(stack, seconds))
            fill(stack, parked)
            time.sleep(1)
            loaded.append(measure(stack, seconds))
            checks.append((stack.redis.zcard(parked),
                           stack.redis.llen(f"{prefix}:celery:submit"),
                           stack.sim.stats()["calls_total"]))
            log(f"  round {r + 1}: idle {idle[-1]['total']:.1f} cmd/s, loaded "
                f"{loaded[-1]['total']:.1f} cmd/s; after it: parked {checks[-1][0]}, "
                f"submit queue {checks[-1][1]}, provider calls {checks[-1][2]}")
        state = client.rt.submit_limiter.state()["pause"]
    stack.clear_prefix(prefix)
    med_idle = statistics.median(m["total"] for m in idle)
    med_loaded = statistics.median(m["total"] for m in loaded)
    ratio = med_loaded / med_idle
    intact = all(c == (PARKED, 0, 0) for c in checks)
    met = ratio <= TARGET_RATIO and intact
    log(f"median: idle {med_idle:.1f} cmd/s, loaded {med_loaded:.1f} cmd/s, "
        f"ratio {ratio:.2f}x; pause state {state}")
    names = sorted({k for m in idle + loaded for k in m} - {"total"})
    breakdown = []
    for name in names:
        i = statistics.mean(m.get(name, 0.0) for m in idle)
        lo = statistics.mean(m.get(name, 0.0) for m in loaded)
        breakdown.append([name, f"{i:.2f}", f"{lo:.2f}"])
        log(f"  {name:18s} idle {i:7.2f}/s  loaded {lo:7.2f}/s")
    body = "\n".join([
        f"2 worker processes x 2 slots + beat, account paused, BACKBEAT_POLL_INTERVAL=2 "
        f"(default); {rounds} round(s) of idle then loaded, {seconds:g} s each.", "",
        table(["fleet", "Redis commands/s (median)", "per round", "ratio vs idle"], [
            ["0 parked jobs (baseline)", f"{med_idle:.1f}",
             " ".join(f"{m['total']:.1f}" for m in idle), "1.00x"],
            [f"{PARKED:,} parked jobs", f"{med_loaded:.1f}",
             " ".join(f"{m['total']:.1f}" for m in loaded), f"{ratio:.2f}x"]]),
        "", "Per command (mean commands/s over the rounds):", "",
        table(["command", "idle", f"{PARKED:,} parked"], breakdown), "",
        f"- goal ({GOAL}, ratio <= {TARGET_RATIO:.2f}x, nothing woken): "
        f"**{'met' if met else 'MISSED'}**",
        f"- after each loaded round: parked / submit queue / provider calls = "
        f"{', '.join(f'{a:,} / {b} / {c}' for a, b, c in checks)}",
        "- commands run inside Lua scripts are counted by Redis under their own names too "
        "(each `evalsha` line is one script call; its `time`, `hmget`... are inside it). "
        "The idle traffic is mostly Celery's: BRPOP polling of the queues, task events, "
        "beat's messages.",
    ])
    return Section("paused", "Cost of a paused backlog of 100k jobs", GOAL, body, met=met)
