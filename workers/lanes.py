"""Fair shares between producers: per-producer lanes in Redis, served by deficit round robin.

Under backlog a new job does not join the broker's FIFO queue: it waits in its producer's lane
(``{p}:lane:<producer>``, ordered by priority, 9 first, then first come), and the pump takes jobs
from the lanes in proportion to the producers' weights (``BACKBEAT_PRODUCERS``;
``dispatch.lua``), only as many as the accounts can take in the next couple of pump intervals.
So a producer that floods the queue gets its share, and another producer's jobs wait for their
own share only. While no lane holds a job and the broker queue is short, a new job is sent at
once (the latency of an idle system is unchanged).

A dispatched job is leased in the parked set before its message is sent (a lost message is
sent again when the lease ends); the housekeeping rescues leave a job in a lane alone.

The prediction (:func:`position`): with the lanes' lengths and weights, the jobs the pump will
take before a waiting job are counted exactly as deficit round robin takes them (each other
lane gives at most its weight's share per job of this lane, never more than it holds), plus
the jobs already dispatched and not yet submitted (the front of the broker queue, the messages
workers hold, the parked set); divided by the fleet's effective rate.
"""

from __future__ import annotations

import math
from typing import Any

from ..config.producers import DEFAULT
from . import scripts
from .dispatch import send_submit, send_submits, wake_lease_ms
from .errors import BudgetExceeded
from .runtime import Runtime

#: how many pump intervals of work the broker queue may hold ahead of the lanes
AHEAD_INTERVALS = 2
#: a parked job whose score is within this of a fresh lease's end is leased (on its way)
LEASE_SLACK_MS = 60_000


def rate_per_s(rt: Runtime, effective: bool = True, now_ms: int | None = None) -> float:
    """Submissions per second the accounts that take submissions allow at ``now_ms`` (the
    Redis time when None; effective limits, gates closed = 0), or by their configured
    rules."""
    total = 0.0
    if effective and now_ms is None:
        now_ms = rt.store.now_ms()
    for account in rt.accounts:
        if account.weight <= 0:
            continue
        rate = account.submit.rate
        if effective:
            gate = account.submit.gate(now_ms)
            limit = 0 if gate.closed else gate.effective_limit
        else:
            limit = rate.limit
        total += limit * 1000 / rate.window_ms
    return total


def target(rt: Runtime) -> int:
    """How many messages the front of the broker queue may hold ahead of the lanes: the
    accounts' configured rate over AHEAD_INTERVALS pump intervals, plus one."""
    interval_s = max(rt.settings.poll_interval_s, 0.1)
    return math.ceil(rate_per_s(rt, effective=False) * interval_s * AHEAD_INTERVALS) + 1


def weights_arg(rt: Runtime) -> str:
    return "|".join(f"{p.name}={p.weight!r}" for p in rt.settings.producers)


def send_new(rt: Runtime, job_id: str) -> None:
    """Send a new job's message at the front of the line and take it out of the outbox."""
    send_submit(rt.settings, job_id, front=True)
    rt.store.dispatched(job_id)


def send_or_admit(rt: Runtime, job_id: str, producer: str, priority: int) -> bool:
    """Send a new job's message now (no lane waits, nothing is parked and the queue is
    short: an idle system), or admit it to its producer's lane; True when sent. While every
    account is gated, the workers park what they take, so new jobs wait in their lanes and
    keep their shares for when a gate opens."""
    k = rt.keys
    pipe = rt.redis.pipeline(transaction=False)
    pipe.scard(k.lanes)
    pipe.zcard(k.parked)  # jobs parked (a gate closed, a backoff) or on their way: busy
    same = rt.broker_redis is rt.redis  # the broker may be another Redis
    if same:
        pipe.llen(k.submit_queue)
    waiting, parked, *queued = pipe.execute()
    queued = queued[0] if same else rt.broker_redis.llen(k.submit_queue)
    if not waiting and not parked and queued < target(rt):
        send_new(rt, job_id)
        return True
    scripts.register(rt.redis, "admit")(
        keys=[k.lane(producer), k.lanes, k.lane_of, k.outbox, k.lane_seq],
        args=[job_id, producer, int(priority)])
    return False


def dispatch(rt: Runtime, budget: int, lease_ms: int) -> int:
    """Take up to ``budget`` jobs from the lanes (dispatch.lua), lease them in the parked set
    and send their messages at the front of the line; returns how many."""
    if budget <= 0:
        return 0
    k = rt.keys
    ids = scripts.register(rt.redis, "dispatch")(
        keys=[k.lanes, k.lane_of, k.parked, k.drr],
        args=[budget, lease_ms, k.lane_prefix, k.job_prefix, weights_arg(rt)])
    send_submits(rt.settings, ids, front=True)
    return len(ids)


def lane_budget(rt: Runtime, room: int, woken: int) -> int:
    """Jobs the lanes may give this pump cycle: within the accounts' ``room`` left after the
    ``woken`` parked jobs, and keeping the queue's front within :func:`target`."""
    queued = rt.broker_redis.llen(rt.keys.submit_queue)
    return max(0, min(room - woken, target(rt) - queued))


def remove(rt: Runtime, job_id: str) -> None:
    """Take a job out of its lane (it was cancelled or expired): its place is not counted any
    more, and an emptied lane leaves the round."""
    producer = rt.redis.hget(rt.keys.lane_of, job_id)
    if producer:
        scripts.register(rt.redis, "unlane")(
            keys=[rt.keys.lane(producer), rt.keys.lanes, rt.keys.lane_of],
            args=[job_id, producer])


def lanes(rt: Runtime) -> dict[str, int]:
    """Producer -> jobs waiting in its lane."""
    names = sorted(rt.redis.smembers(rt.keys.lanes))
    pipe = rt.redis.pipeline(transaction=False)
    for name in names:
        pipe.zcard(rt.keys.lane(name))
    return dict(zip(names, pipe.execute(), strict=True))


def position(rt: Runtime, job_id: str, producer: str | None = None) -> dict[str, Any] | None:
    """Where a job waiting in a lane stands: its lane, how many of its lane's jobs are ahead,
    how many jobs the pump takes before it (all lanes and the jobs already dispatched) and
    the predicted time of its submission at the fleet's current effective rate (None: every
    account is gated). None when the job is not in a lane."""
    k = rt.keys
    producer = producer or rt.redis.hget(k.lane_of, job_id)
    if not producer:
        return None
    rank = rt.redis.zrank(k.lane(producer), job_id)
    if rank is None:
        return None
    lengths = lanes(rt)
    mine = rt.settings.producer(producer).weight
    turn = rank + 1  # this lane's jobs up to and including this one
    others = sum(min(n, math.ceil(turn * rt.settings.producer(name).weight / mine))
                 for name, n in lengths.items() if name != producer)
    broker = rt.broker_redis.pipeline(transaction=False)
    broker.llen(k.submit_queue)
    broker.hlen(k.unacked)  # taken by a worker, waiting for a token
    in_front, delivered = broker.execute()
    # the parked set without the jobs leased there on their way to a worker (woken or
    # dispatched: counted in the queue or with the workers already); a leased job's score is
    # its lease's end, later than any refusal's or backoff's due time
    now_ms = rt.store.now_ms()
    lease_from = now_ms + wake_lease_ms(rt.settings) - LEASE_SLACK_MS
    parked = rt.redis.zcount(k.parked, "-inf", f"({lease_from}")
    ahead = rank + others + in_front + delivered + parked
    rate = rate_per_s(rt, now_ms=now_ms)
    return {"lane": producer, "position": rank, "ahead": ahead,
            "rate_per_s": round(rate, 3),
            "predicted_submit_ms": None if rate <= 0 else now_ms + int(ahead / rate * 1000)}


def check_quota(rt: Runtime, producer: str, member: str) -> float:
    """Count a new job against its producer's quota: 0 when counted, else the seconds until
    one may be created (``quota.lua``; no quota: 0, nothing counted)."""
    quota = rt.settings.producer(producer).quota
    if quota is None:
        return 0.0
    wait_ms = scripts.register(rt.redis, "quota")(
        keys=[rt.keys.quota(producer)], args=[quota.limit, quota.window_ms, member])
    return int(wait_ms) / 1000


def give_back_quota(rt: Runtime, producer: str, member: str) -> None:
    """A counted request that created nothing (a replay of an existing job) leaves the
    window."""
    if rt.settings.producer(producer).quota is not None:
        rt.redis.zrem(rt.keys.quota(producer), member)


__all__ = ["DEFAULT", "check_quota", "dispatch", "lane_budget", "lanes", "position",
           "remove", "send_or_admit", "target"]


def job_cost(rt: Runtime) -> float | None:
    """What one job is expected to cost: the highest cost per accepted submission among the
    accounts that take submissions (configured ``credit_cost``, else learned); None while no
    account's cost is known."""
    costs = [a.spec.credit_cost for a in rt.accounts if a.weight > 0
             and a.spec.credit_cost is not None]
    pipe = rt.redis.pipeline(transaction=False)
    live = [a for a in rt.accounts if a.weight > 0]
    for account in live:
        pipe.hget(rt.keys.limiter_state(account.id), "credits:cost")
    costs += [float(c) for c in pipe.execute() if c]
    return max(costs) if costs else None


def reserve_budget(rt: Runtime, producer: str) -> float:
    """Reserve one job's cost against the producer's ``credit_budget``: the credits reserved
    (0 without a budget, or while no cost is known: nothing to price it with); raises
    BudgetExceeded when the job would pass the budget."""
    budget = rt.settings.producer(producer).credit_budget
    if budget is None:
        return 0.0
    cost = job_cost(rt)
    if cost is None:
        return 0.0
    refused = scripts.register(rt.redis, "budget")(
        keys=[rt.keys.budget], args=[producer, repr(cost), repr(budget)])
    if refused not in ("", b""):
        raise BudgetExceeded(producer, budget, float(refused), cost)
    return cost


def give_back_budget(rt: Runtime, producer: str, reserved: float) -> None:
    """A job that never reached the provider (cancelled, or a replay that created nothing)
    gives its reservation back."""
    if reserved > 0:
        rt.redis.hincrbyfloat(rt.keys.budget, producer, -reserved)
