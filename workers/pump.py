"""The pump: sends parked jobs back to the broker, only when the limiter can take them.

While every account is paused or its breaker open, a cycle costs one Redis command per account
plus one whatever the backlog (TIME, HMGET each): a paused backlog of 100k jobs costs Redis
almost nothing. Otherwise
one pump at a time, fleet-wide, counts the room in the queue and fills it (a short lease), so a
second beat's pump never counts the same room twice.
"""

from __future__ import annotations

from redis.exceptions import LockError

from . import lanes
from .dispatch import send_submits, wake_lease_ms
from .runtime import Runtime

#: longest one pump holds the fleet-wide pump lease (``{prefix}:pump-lease``), in seconds: it is
#: released as soon as the cycle's messages are sent; a pump that died frees it after this
CYCLE_LEASE_S = 30.0


def pump(rt: Runtime) -> int:
    """Wake as many parked jobs as the accounts can take soon, then take jobs from the
    producers' lanes (workers/lanes.py) for what is left; returns how many were sent."""
    if wake_budget(rt) <= 0:  # gated or full: no lease taken
        return 0
    lease = rt.redis.lock(rt.keys.pump_lease, timeout=CYCLE_LEASE_S,
                          blocking=False)
    if not lease.acquire():  # another pump is filling the queue right now
        return 0
    try:
        room = wake_budget(rt)  # counted again: the queue may have just been filled
        woken = wake(rt, room)  # parked jobs were admitted before any lane's: first
        # then the producers' lanes, fairly, only what the accounts take in the next intervals
        return woken + lanes.dispatch(rt, lanes.lane_budget(rt, room, woken),
                                      wake_lease_ms(rt.settings))
    finally:
        try:
            lease.release()
        except LockError:  # held longer than CYCLE_LEASE_S: already free
            pass


def wake(rt: Runtime, budget: int) -> int:
    """Claim up to ``budget`` due parked jobs (leased) and send each its message."""
    if budget <= 0:
        return 0
    ids = rt.store.claim_due(rt.keys.parked, budget, wake_lease_ms(rt.settings))
    send_submits(rt.settings, ids, front=True)
    return len(ids)


def wake_budget(rt: Runtime) -> int:
    """What the accounts that take submissions can take soon: per account 0 while gated, 1
    when a probe is due, else its effective limit; less the jobs already at the front of the
    line (woken earlier and not taken yet)."""
    now_ms = rt.store.now_ms()
    room = 0
    for account in rt.accounts:
        if account.weight <= 0:  # draining: no new submission through it
            continue
        gate = account.submit.gate(now_ms)
        room += 0 if gate.closed else 1 if gate.probe_due else gate.effective_limit
    if room <= 0:
        return 0
    return max(0, room - rt.broker_redis.llen(rt.keys.submit_queue))
