"""Benchmark 4: what a paused backlog of 100,000 parked jobs costs Redis, per second.

The account is paused (``Limiter.pause()``); 2 worker processes (2 slots each) and a beat run
with the default BACKBEAT_POLL_INTERVAL (2 s: a pump and a reconcile every 2 s). Rounds
alternate *idle* (no job at all) and *loaded* (100,000 real jobs made through the store, so
every index housekeeping reads holds them, then parked as a paused worker parks them; made and
removed outside the measured interval). Each measure is the ``INFO commandstats`` delta over
the interval, in commands and in Redis CPU time (``usec``): a command that reads the backlog
costs in time what it does not cost in count. Our own INFO calls are left out.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import Fleet, Log, Section, Stack, table

from backbeat.config.settings import Settings
from backbeat.devstack.backlog import park_as_sent
from backbeat.workers.runtime import Runtime

GOAL = "a paused backlog of 100k jobs costs ~the same Redis commands/s and CPU time as none"
PARKED = 100_000
#: loaded / idle commands per second must stay under this (noise allowance)
TARGET_RATIO = 1.10
#: loaded / idle Redis CPU time per second must stay under this: CPU time on a shared box is
#: noisy (0.8x-1.6x between two idle samples); one command reading the backlog each tick costs
#: about 10x
TARGET_CPU_RATIO = 2.0
#: threads making the backlog (each store.create is a round trip: they overlap)
MAKERS = 4


def snapshot(stack: Stack) -> dict[str, dict[str, int]]:
    return {k.removeprefix("cmdstat_"): {"calls": v["calls"], "usec": v["usec"]}
            for k, v in stack.redis.info("commandstats").items() if k != "cmdstat_info"}


def measure(stack: Stack, seconds: float) -> dict[str, dict[str, float]]:
    """Per command: calls and usec per second over ``seconds``; ``total`` sums them."""
    before = snapshot(stack)
    time.sleep(seconds)
    after = snapshot(stack)
    zero = {"calls": 0, "usec": 0}
    rates = {k: {n: (after[k][n] - before.get(k, zero)[n]) / seconds for n in zero}
             for k in after if after[k]["calls"] != before.get(k, zero)["calls"]}
    rates["total"] = {n: sum(r[n] for r in rates.values()) for n in zero}
    return rates


def fill(rt: Runtime, count: int) -> None:
    """``count`` jobs made through the store, their message sent and taken, then parked by a
    worker because the account is paused (out of the outbox, into the parked set)."""

    def make(start: int) -> None:
        ids = [rt.store.create(f"bp-{n}", "add-instrumental", {
            "uploadUrl": "https://example.com/v.mp3", "title": f"Paused {n}", "tags": "rock",
            "negativeTags": "metal"})[0].id for n in range(start, min(start + 1000, count))]
        park_as_sent(rt, ids)

    with ThreadPoolExecutor(MAKERS) as pool:
        list(pool.map(make, range(0, count, 1000)))


def empty(stack: Stack, rt: Runtime) -> None:
    """Remove every job of the backlog: records, histories and every index (not the limiter's
    state, nor Celery's keys)."""
    k = rt.keys
    pipe = stack.redis.pipeline(transaction=False)
    for pattern in (k.job("*"), k.hist("*"), k.idem("*")):
        for key in stack.redis.scan_iter(pattern, count=5000):
            pipe.delete(key)
    pipe.delete(k.parked, k.outbox, k.deadline, k.jobs, k.events, *k.state_indexes)
    pipe.execute()


def run(stack: Stack, quick: bool, log: Log) -> Section:
    rounds, seconds = (1, 5.0) if quick else (2, 10.0)
    prefix = "bp"
    stack.clear_prefix(prefix)
    stack.sim.reset()
    env = stack.env(prefix, BACKBEAT_POLL_INTERVAL="2")
    rt = Runtime(Settings.from_env(env))
    rt.submit_limiter.pause("bench")
    parked = rt.keys.parked
    log(f"paused backlog: 2 workers x 2 slots + beat, poll interval 2 s, {rounds} rounds of "
        f"idle / loaded ({PARKED:,} parked jobs, real records), {seconds:g} s each")
    idle, loaded, checks = [], [], []
    with Fleet(env, Path(stack.run_dir) / prefix, 2, 2):
        time.sleep(4)  # the fleet's idle loop settles (first beats sent)
        for r in range(rounds):
            empty(stack, rt)
            time.sleep(1)
            idle.append(measure(stack, seconds))
            started = time.monotonic()
            fill(rt, PARKED)
            made_s = time.monotonic() - started
            time.sleep(1)
            loaded.append(measure(stack, seconds))
            checks.append((stack.redis.zcard(parked),
                           sum(stack.redis.llen(q) for q in
                               stack.redis.scan_iter(f"{prefix}:celery:submit*")),
                           stack.sim.stats()["calls_total"]))
            i, lo = idle[-1]["total"], loaded[-1]["total"]
            log(f"  round {r + 1}: idle {i['calls']:.1f} cmd/s {i['usec']:.0f} us/s, loaded "
                f"{lo['calls']:.1f} cmd/s {lo['usec']:.0f} us/s (backlog made in {made_s:.0f} s);"
                f" after it: parked {checks[-1][0]}, submit queue {checks[-1][1]}, provider "
                f"calls {checks[-1][2]}")
        state = rt.submit_limiter.state()["pause"]
        empty(stack, rt)
    stack.clear_prefix(prefix)

    def median(runs: list, name: str) -> float:
        return statistics.median(m["total"][name] for m in runs)

    ratio = median(loaded, "calls") / median(idle, "calls")
    cpu_ratio = median(loaded, "usec") / median(idle, "usec")
    intact = all(c == (PARKED, 0, 0) for c in checks)
    met = ratio <= TARGET_RATIO and cpu_ratio <= TARGET_CPU_RATIO and intact
    log(f"median: idle {median(idle, 'calls'):.1f} cmd/s {median(idle, 'usec'):.0f} us/s, "
        f"loaded {median(loaded, 'calls'):.1f} cmd/s {median(loaded, 'usec'):.0f} us/s, "
        f"ratio {ratio:.2f}x commands, {cpu_ratio:.2f}x CPU time; pause state {state}")
    names = sorted({k for m in idle + loaded for k in m} - {"total"})
    breakdown = []
    for name in names:
        cells = [statistics.mean(m.get(name, {}).get(n, 0.0) for m in runs)
                 for runs in (idle, loaded) for n in ("calls", "usec")]
        breakdown.append([name, *(f"{c:.2f}" for c in cells)])
        log(f"  {name:18s} idle {cells[0]:7.2f}/s {cells[1]:8.1f} us/s  "
            f"loaded {cells[2]:7.2f}/s {cells[3]:8.1f} us/s")
    body = "\n".join([
        f"2 worker processes x 2 slots + beat, account paused, BACKBEAT_POLL_INTERVAL=2 "
        f"(default); {rounds} round(s) of idle then loaded, {seconds:g} s each; the backlog is "
        f"{PARKED:,} real jobs made through the store (records and every index), parked.", "",
        table(["fleet", "Redis commands/s (median)", "Redis CPU us/s (median)", "per round",
               "ratio vs idle (commands, CPU)"], [
            ["0 jobs (baseline)", f"{median(idle, 'calls'):.1f}",
             f"{median(idle, 'usec'):.0f}",
             " ".join(f"{m['total']['calls']:.1f}/{m['total']['usec']:.0f}" for m in idle),
             "1.00x, 1.00x"],
            [f"{PARKED:,} parked jobs", f"{median(loaded, 'calls'):.1f}",
             f"{median(loaded, 'usec'):.0f}",
             " ".join(f"{m['total']['calls']:.1f}/{m['total']['usec']:.0f}" for m in loaded),
             f"{ratio:.2f}x, {cpu_ratio:.2f}x"]]),
        "", "Per command (mean over the rounds):", "",
        table(["command", "idle calls/s", "idle us/s", f"{PARKED:,} parked calls/s",
               f"{PARKED:,} parked us/s"], breakdown), "",
        f"- goal ({GOAL}, ratio <= {TARGET_RATIO:.2f}x in commands and <= "
        f"{TARGET_CPU_RATIO:.1f}x in Redis CPU time, nothing woken): "
        f"**{'met' if met else 'MISSED'}**",
        f"- after each loaded round: parked / submit queue / provider calls = "
        f"{', '.join(f'{a:,} / {b} / {c}' for a, b, c in checks)}",
        "- commands run inside Lua scripts are counted by Redis under their own names too "
        "(each `evalsha` line is one script call; its `time`, `hmget`... are inside it, and "
        "its CPU time includes theirs). The idle traffic is mostly Celery's: BRPOP polling of "
        "the queues, task events, beat's messages.",
        "- Redis CPU time (`INFO commandstats` usec) is noisy on a shared machine (0.8x-1.6x "
        "between two idle samples); a command that read the backlog each tick would show as "
        "about 10x.",
    ])
    return Section("paused", "Cost of a paused backlog of 100k jobs", GOAL, body, met=met)
