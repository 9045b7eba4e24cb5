"""The pump: sends parked jobs back to the broker, only when the limiter can take them.

While the account is paused or the breaker is open, a cycle costs two Redis commands whatever
the backlog (TIME, HMGET): a paused backlog of 100k jobs costs Redis almost nothing.
"""

from __future__ import annotations

from .dispatch import send_submit
from .runtime import Runtime

#: a woken job stays leased in the parked set at most this long, in ms, and no longer than
#: the broker's visibility timeout: if its message is lost (a Redis restart within its fsync
#: second, a worker killed as kombu pops it) the pump sends it again afterwards (harmless: a
#: submit claims a job only from ``queued``, and a worker that takes the message replaces the
#: lease by a transition or a new park)
WAKE_LEASE_MS = 300_000


def pump(rt: Runtime) -> int:
    """Wake as many parked jobs as the submit bucket can take soon; returns how many."""
    budget = wake_budget(rt)
    if budget <= 0:
        return 0
    lease_ms = min(WAKE_LEASE_MS, int(rt.settings.visibility_timeout_s * 1000))
    ids = rt.store.claim_due(rt.keys.parked, budget, lease_ms)
    for job_id in ids:
        send_submit(rt.settings, job_id)
    return len(ids)


def wake_budget(rt: Runtime) -> int:
    """0 while gated; 1 when a probe is due; else the effective limit less the queue depth."""
    lim = rt.submit_limiter
    now_ms = rt.store.now_ms()
    (pause, auto, probe_at, breaker, breaker_until, factor) = rt.redis.hmget(
        lim.state_key, "pause", "pause:auto", "pause:probe_at", "breaker", "breaker:until",
        "submit:factor")
    probe_due = False
    if pause:
        if auto != "1" or now_ms < int(probe_at or 0):
            return 0
        probe_due = True
    if breaker == "open":
        if now_ms < int(breaker_until or 0):
            return 0
        probe_due = True
    if probe_due:
        return 1
    effective = max(1, int(lim.rate.limit * float(factor or 1) + 1e-9))
    waiting = rt.redis.llen(rt.keys.submit_queue)
    return max(0, effective - waiting)
