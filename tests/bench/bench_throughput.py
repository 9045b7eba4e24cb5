"""Benchmark 1: the limiter's whole cycle from one process, one thread, against the same Redis.

One operation is what a worker does per provider call: backbeat ``Limiter.try_acquire()`` and,
when granted, ``report()`` of the call's (accepted) answer; ``limits``
(MovingWindowRateLimiter + RedisStorage, ``hit``, which has nothing to report); ``pyrate-limiter``
4.x (``Limiter(RedisBucket)``, ``try_acquire(blocking=False)``). Each has its own connection.
In each round the contenders take turns in slices of SLICE_OPS calls (A B C, B C A, C A B,
...), so a noisy neighbour slows all of them alike; the median ops/s of each is reported,
with the median of the per-round ratios.

Two cases: *granted* (a limit of 10^9 per 60 s, keys emptied before each round, so every call
is a grant) and *refused* (5 per 60 s, filled first, so every call is a refusal: what waiting
workers mostly do). Differences worth knowing: ``limits`` stamps entries with the client's
clock, pyrate-limiter too (``time_ns``) and runs a leak thread; backbeat reads the Redis server
clock (``TIME``) inside its script and also checks the account's gates (pause, breaker,
cool-down) in the same round trip.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from common import Log, Section, Stack, table
from redis import Redis

from backbeat.config.settings import RateSpec
from backbeat.provider.profiles import Outcome
from backbeat.workers.keys import Keys
from backbeat.workers.limiter import Limiter, Policy

GOAL = ("backbeat acquire + report per granted call >= 1.0x `limits` ops/s (median of per-round "
        "ratios) and <= 1.5x its Redis time per call")
#: most operations of one contender in one round, whatever its duration
MAX_OPS_PER_ROUND = 2_000_000
#: calls a contender makes in one turn before the next takes over (about 10-30 ms)
SLICE_OPS = 128
BIG, SMALL, WINDOW_S = 10**9, 5, 60


def _contenders(stack: Stack, limit: int) -> dict[str, tuple[Callable[[], Any], list[str]]]:
    """name -> (one acquire, the Redis keys it uses)."""
    from limits import RateLimitItemPerMinute
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter
    from pyrate_limiter import Duration, Rate, RedisBucket
    from pyrate_limiter import Limiter as PyrateLimiter

    ours = Limiter(Redis(port=stack.redis_port, decode_responses=True), Keys("tp"),
                   f"acct{limit}", "submit", RateSpec(limit, WINDOW_S * 1000), Policy(),
                   burst=limit)
    storage = RedisStorage(f"redis://127.0.0.1:{stack.redis_port}")
    moving = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(limit)
    pyrate_key = f"tp:pyrate:{limit}"
    bucket = RedisBucket.init([Rate(limit, Duration.MINUTE)],
                              Redis(port=stack.redis_port, decode_responses=True), pyrate_key)
    pyrate = PyrateLimiter(bucket)

    def cycle() -> bool:  # a worker's whole cycle: the token, then the call's answer
        grant = ours.try_acquire()
        if grant.granted:
            ours.report(Outcome.ACCEPTED, grant)
        return grant.granted

    def close() -> None:
        ours.flush()
        pyrate.close()

    return {
        "backbeat": (cycle, [ours.log_key, ours.state_key]),
        "limits": (lambda: moving.hit(item, "bench", str(limit)),
                   [f"LIMITS:LIMITER/bench/{limit}/{limit}/1/minute"]),
        "pyrate-limiter": (lambda: pyrate.try_acquire("bench", blocking=False), [pyrate_key]),
        "_close": (close, []),
    }


#: the commands whose time is counted: every contender sends its scripts (and nothing else
#: per call); a script's usec includes the commands it calls, which Redis 7 also lists on
#: their own in commandstats (so those are not added again)
SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall")


def _script_usec(stack: Stack) -> tuple[int, int]:
    """(calls, usec) of every script call so far: the server time of each contender."""
    stats = stack.redis.info("commandstats")
    used = [stats.get(k, {}) for k in SCRIPT_COMMANDS]
    return sum(int(v.get("calls", 0)) for v in used), sum(int(v.get("usec", 0)) for v in used)


def _round(ops: dict[str, Callable[[], Any]], seconds: float,
           stack: Stack) -> dict[str, tuple[float, int, int, float]]:
    """One round: the contenders take turns in slices of SLICE_OPS calls (the order rotating
    each turn) for about ``seconds`` each. Returns name -> (ops/s, ops, granted, script us per
    call in Redis). Each contender's time is the sum of its own slices only, so the noise of a
    shared machine, which changes over tens of milliseconds and more, falls on all alike."""
    names = list(ops)
    spent = dict.fromkeys(names, 0.0)
    count, granted, usec = dict.fromkeys(names, 0), dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    deadline = time.perf_counter() + seconds * len(names)
    turn = 0
    while time.perf_counter() < deadline and count[names[0]] < MAX_OPS_PER_ROUND:
        k = turn % len(names)
        for name in names[k:] + names[:k]:
            op = ops[name]
            calls0, usec0 = _script_usec(stack)
            g = 0
            start = time.perf_counter()
            for _ in range(SLICE_OPS):
                g += bool(op())
            spent[name] += time.perf_counter() - start
            calls1, usec1 = _script_usec(stack)
            count[name] += SLICE_OPS
            granted[name] += g
            usec[name] += usec1 - usec0
        turn += 1
    return {name: (count[name] / spent[name], count[name], granted[name],
                   usec[name] / count[name]) for name in names}


def _case(stack: Stack, limit: int, rounds: int, seconds: float, log: Log) -> dict[str, Any]:
    c = _contenders(stack, limit)
    close = c.pop("_close")[0]
    try:
        for _name, (op, keys) in c.items():  # warm-up: scripts loaded, connections open
            for _ in range(200):
                op()
            if limit == BIG:
                stack.redis.delete(*keys)
        per: dict[str, list[float]] = {name: [] for name in c}
        granted: dict[str, int] = {name: 0 for name in c}
        ops: dict[str, int] = {name: 0 for name in c}
        usec: dict[str, list[float]] = {name: [] for name in c}
        for r in range(rounds):
            if limit == BIG:
                stack.redis.delete(*(key for _op, keys in c.values() for key in keys))
            result = _round({name: op for name, (op, _keys) in c.items()}, seconds, stack)
            for name, (rate, n, g, us) in result.items():
                per[name].append(rate)
                usec[name].append(us)
                granted[name] += g
                ops[name] += n
                log(f"  round {r + 1} {name:15s} {rate:9.0f} ops/s  ({n} ops, {g} granted; "
                    f"script {us:.1f} us/call in Redis)")
        return {"per": per, "granted": granted, "ops": ops, "usec": usec}
    finally:
        close()


def _paired(per: dict[str, list[float]], other: str) -> float:
    """Median over rounds of backbeat / ``other`` measured back to back in the same round."""
    return statistics.median(b / o for b, o in zip(per["backbeat"], per[other], strict=True))


def run(stack: Stack, quick: bool, log: Log) -> Section:
    rounds, seconds = (3, 0.5) if quick else (9, 1.0)
    log(f"limiter cycle throughput: {rounds} rounds x {seconds} s per contender, "
        f"interleaved in slices of {SLICE_OPS} calls")
    log(f"granted case: limit {BIG} per {WINDOW_S} s")
    granted = _case(stack, BIG, rounds, seconds, log)
    log(f"refused case: limit {SMALL} per {WINDOW_S} s, filled first")
    refused = _case(stack, SMALL, rounds, seconds, log)
    rows, summary, ratios = [], [], {}
    for case, res in (("granted", granted), ("refused", refused)):
        med = {name: statistics.median(v) for name, v in res["per"].items()}
        for name, v in res["per"].items():
            rows.append([case, name, f"{med[name]:,.0f}", f"{min(v):,.0f} - {max(v):,.0f}",
                         f"{med[name] / med['limits']:.2f}x",
                         f"{med[name] / med['pyrate-limiter']:.2f}x",
                         f"{statistics.median(res['usec'][name]):.1f}",
                         f"{res['granted'][name]:,} / {res['ops'][name]:,}"])
        ratios[case] = (_paired(res["per"], "limits"), _paired(res["per"], "pyrate-limiter"))
        summary.append(f"{case}: backbeat/limits = {ratios[case][0]:.2f}x, "
                       f"backbeat/pyrate-limiter = {ratios[case][1]:.2f}x (median of the "
                       f"per-round ratios; ratio of the medians "
                       f"{med['backbeat'] / med['limits']:.2f}x and "
                       f"{med['backbeat'] / med['pyrate-limiter']:.2f}x)")
    us = granted["usec"]
    usec_ratio = statistics.median(b / o for b, o in zip(us["backbeat"], us["limits"],
                                                          strict=True))
    summary.append(f"granted: Redis time per call backbeat/limits = {usec_ratio:.2f}x "
                   f"({statistics.median(us['backbeat']):.1f} vs "
                   f"{statistics.median(us['limits']):.1f} us; median of the per-round ratios)")
    for line in summary:
        log(line)
    met = ratios["granted"][0] >= 1.0 and usec_ratio <= 1.5
    body = "\n".join([
        table(["case", "limiter", "median ops/s", "min - max", "medians vs limits",
               "medians vs pyrate",
               "Redis us/call", "granted / calls"], rows),
        "",
        *[f"- {line}" for line in summary],
        f"- goal ({GOAL}): **{'met' if met else 'MISSED'}**",
        f"- one process, one thread, one connection each, same redis-server; within each round "
        f"the contenders take turns in slices of {SLICE_OPS} calls, the order rotating each "
        "turn, and each is timed over its own slices only; keys emptied before each granted "
        "round.",
        "- Redis us/call: `INFO commandstats` usec of the script calls (`EVALSHA`, `EVAL`: "
        "every contender's only commands; a script's time includes the commands it runs) "
        "over each slice, per operation (median of the rounds): the server's CPU per call, "
        "much less noisy than ops/s.",
        "- backbeat's operation is the whole cycle a worker runs per provider call: the token "
        "and, when granted, the call's answer (`report`). A normal answer is held and travels "
        "in the next acquire's script call (or within 20 ms, sent by a background flush: "
        "workers/answers.py), so a granted call costs one round trip, as `limits.hit` does.",
        "- What backbeat's extra server time buys: the Redis clock (`TIME`) instead of each "
        "client's; the account's gates (pause, 455 breaker, cool-down, credit floor, failover "
        "fence) read in the same call; the answer applied to the window (an entry counts as "
        "arriving now until its call is answered, so slow calls cannot put N+1 in a provider "
        "window), counted (`backbeat_provider_calls_total`) and fed to AIMD. `limits` and "
        "pyrate-limiter stamp with the client's clock, know nothing of answers, and "
        "pyrate-limiter runs a leak thread.",
    ])
    return Section("throughput", "Limiter cycle throughput (one process)", GOAL, body, met=met)
