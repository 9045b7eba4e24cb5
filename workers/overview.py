"""One picture of the fleet for the people watching it: jobs by state, the submit window
against the provider's rule, breaker and pause with their reason, the latest failures and paid
duplicates. The status page (``GET /`` with ``GET /v1/status`` and its event stream),
``backbeat watch`` and ``backbeat demo``'s live view all draw this one dict.

A few round trips whatever the backlog: the limiter's figures (:func:`limiter_status`), one
pipeline of counters, and the latest jobs of two short lists.
"""

from __future__ import annotations

from typing import Any

from ..config.values import RateSpec
from .lanes import lanes
from .runtime import Runtime
from .states import ORDER, JobState
from .status import limiter_status
from .store import DUPLICATES

#: how many failed jobs and jobs with a duplicate the picture lists
RECENT = 10
#: the submit window's history covers this many seconds (the status page's chart)
HISTORY_S = 180
#: at most this many transitions are read to draw it (a busier fleet: the latest part only)
HISTORY_EVENTS = 20_000


def overview(rt: Runtime, recent: int = RECENT) -> dict[str, Any]:
    """The picture now (see the module docstring); JSON-ready."""
    status = limiter_status(rt)
    keys, redis = rt.keys, rt.redis
    dup_key = keys.metric(DUPLICATES)
    pipe = redis.pipeline(transaction=False)
    for index in keys.state_indexes:
        pipe.zcard(index)
    pipe.get(dup_key)
    pipe.lrange(keys.recent(dup_key), 0, recent - 1)
    pipe.zrevrange(keys.state(JobState.FAILED.value), 0, recent - 1)
    pipe.time()
    *counts, dup_total, dup_ids, failed_ids, (secs, micros) = pipe.execute()
    jobs = rt.store.get_many([*failed_ids, *dup_ids])  # one round trip
    live = [(acct, a) for acct, a in zip(rt.accounts, status["accounts"], strict=True)
            if a["weight"] > 0]
    live_status = [a for _, a in live]
    calls: dict[str, int] = {}
    for a in live_status:
        for outcome, n in a["submit"]["calls"].items():
            calls[outcome] = calls.get(outcome, 0) + n
    window_ms = rt.primary.submit.rate.window_ms
    limit, effective = fleet_rule(
        [(acct.submit.rate, a["submit"]["effective_limit"]) for acct, a in live], window_ms)
    return {
        "t": secs * 1000 + micros // 1000,
        "account": status["account"],
        "provider": status["provider"],
        "jobs": {state.value: n for state, n in zip(ORDER, counts, strict=True)},
        "backlog": status["backlog"],
        # the fleet's rule: the sum over the accounts that take submissions, each limit
        # scaled to the first one's window ("accounts" has each one's own rule)
        "rule": {"rate": live_status[0]["submit"]["rate"] if len(live) == 1 else
                 f"{limit}/{window_ms / 1000:g}s",
                 "limit": limit, "window_s": window_ms / 1000, "effective_limit": effective},
        "window_calls": sum(a["submit"]["window_calls"] for a in live_status),
        "in_flight": sum(a["submit"]["in_flight"] for a in live_status),
        "throttles": sum(a["submit"]["throttles"] for a in live_status),
        "cooldown_s": max(a["submit"]["cooldown_s"] for a in live_status),
        "calls": calls,
        "breaker": status["breaker"],
        "pause": status["pause"],
        "credits": status.get("credits"),
        "accounts": [_account(a) for a in status["accounts"]],
        # each producer with jobs in its lane: how many, and its weight (its share)
        "producers": [{"name": name, "waiting": n,
                       "weight": rt.settings.producer(name).weight}
                      for name, n in lanes(rt).items()],
        "failures": [_brief(job.to_public()) for job in jobs[:len(failed_ids)] if job],
        "duplicates": {"total": int(dup_total or 0),
                       "recent": [_brief(job.to_public()) for job in jobs[len(failed_ids):]
                                  if job]},
    }


def fleet_rule(rules: list[tuple[RateSpec, int]], window_ms: int) -> tuple[int, int]:
    """(limit, effective limit) of several accounts together in a window of ``window_ms``:
    each account's (rule, effective limit) scaled from its own window to that one."""
    def scaled(calls: int, rate: RateSpec) -> float:
        return calls * window_ms / rate.window_ms

    return (int(sum(scaled(rate.limit, rate) for rate, _ in rules) + 1e-9),
            int(sum(scaled(eff, rate) for rate, eff in rules) + 1e-9))


def _account(a: dict[str, Any]) -> dict[str, Any]:
    """One account's line of the picture."""
    return {"name": a["name"], "provider": a["provider"], "weight": a["weight"],
            "rate": a["submit"]["rate"], "effective_limit": a["submit"]["effective_limit"],
            "window_calls": a["submit"]["window_calls"], "in_flight": a["submit"]["in_flight"],
            "throttles": a["submit"]["throttles"], "calls": a["submit"]["calls"],
            "breaker": a["breaker"], "pause": a["pause"], "credits": a["credits"]}


def _brief(job: dict[str, Any]) -> dict[str, Any]:
    """The fields a list line shows of a public job."""
    return {"id": job["id"], "type": job["type"], "state": job["state"],
            "upstream_task_id": job["upstream_task_id"], "error": job["error"],
            "duplicate_task_ids": job["duplicate_task_ids"], "updated_at": job["updated_at"]}


def window_history(rt: Runtime, seconds: int = HISTORY_S) -> dict[str, Any]:
    """The submit window over the last ``seconds``, one point a second: how many provider
    create calls the window ending at each second held, read back from the transition stream
    (every create call is preceded by exactly one move to ``submitting``: the claim), over
    every account. With the rule's limit and the effective limit now (summed over the
    accounts that take submissions), so a page opened late still shows the past."""
    live = [a for a in rt.accounts if a.weight > 0]
    window_ms = rt.primary.submit.rate.window_ms
    now_ms = rt.store.now_ms()
    start_ms = now_ms - seconds * 1000
    events = rt.redis.xrevrange(rt.keys.events, max="+", min=str(start_ms - window_ms),
                                count=HISTORY_EVENTS)[::-1]  # the latest, when there are more
    claims = [int(sid.split("-", 1)[0]) for sid, ev in events
              if ev.get("to") == JobState.SUBMITTING.value]
    points, lo, hi = [], 0, 0
    for t in [*range(start_ms - start_ms % 1000 + 1000, now_ms, 1000), now_ms]:
        while hi < len(claims) and claims[hi] <= t:
            hi += 1
        while lo < hi and claims[lo] <= t - window_ms:
            lo += 1
        points.append([t, hi - lo])
    limit, effective = fleet_rule(
        [(a.submit.rate, a.submit.state()["effective_limit"]) for a in live], window_ms)
    return {"t": now_ms, "limit": limit, "window_s": window_ms / 1000,
            "effective_limit": effective,
            "points": points}
