"""Job leases: which live worker node holds which job, so a dead node's jobs move again fast.

A worker node takes a lease on a job the moment its broker message is delivered to it (prefetched,
waiting for a token, or mid-call alike) and renews every lease it still holds each heartbeat. A
node that dies (SIGKILL, OOM, a lost machine) stops renewing; any other node's heartbeat, or
housekeeping, then reclaims the job within about ``TTL_S + HEARTBEAT_S``:

- a job still ``queued``: its broker message is put back at the front of its queue at once (what
  kombu itself would do only after the visibility timeout, an hour by default);
- a job in ``submitting``: the dead node may have sent the call, so the job becomes *uncertain*
  (adopted by its callback, or resubmitted by policy after the grace) and its message is put
  back too (its redelivery finds the job uncertain and never calls again).

Leases only speed recovery up; correctness never depends on them: a job is claimed only from
``queued`` (transition.lua), so a lease reclaimed from a node that was merely slow costs a spare
delivery, never a second paid call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis import Redis

from . import scripts
from .keys import Keys
from .redis_conn import server_ms

log = logging.getLogger(__name__)

#: seconds between two heartbeats of a node (renew its leases, reclaim expired ones)
HEARTBEAT_S = 5.0
#: lease length, in seconds: four heartbeats, so a live node never loses one to a late beat
TTL_S = 20.0
#: a reclaimed queued job is also parked this long (ms): the pump's fallback if putting its
#: broker message back fails
FALLBACK_MS = 120_000
#: expired leases examined per sweep
BATCH = 200
#: how long a beat cycle (reconcile, webhooks, housekeeping) may start work on the entries it
#: claimed from a schedule, in ms: each claim leases them for this (plus the longest one piece
#: of work can take), so a second beat never takes the same entry while the first may act on it
CYCLE_LEASE_MS = 60_000


@dataclass(frozen=True)
class Reclaimed:
    """One job taken back from a node that stopped renewing its lease."""

    job_id: str
    #: the job's state when reclaimed: "queued" or "submitting"
    state: str
    #: the dead node's name
    node: str
    #: the broker delivery tag of its message on that node ("" when unknown)
    tag: str


class Leases:
    """Take, renew, release and reclaim job leases (one zset and one hash in Redis)."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: float = TTL_S) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = int(ttl_s * 1000)
        self._lease = scripts.register(redis, "lease")
        self._reclaim = scripts.register(redis, "reclaim")

    def take(self, node: str, held: Iterable[tuple[str, str]]) -> int:
        """``node`` was delivered these (job id, delivery tag) pairs: lease them to it."""
        flat = [x for pair in held for x in pair]
        if not flat:
            return 0
        return int(self._lease(keys=[self.keys.leases, self.keys.lease_holders],
                               args=["take", self.ttl_ms, node, *flat]))

    def renew(self, node: str, job_ids: Iterable[str]) -> int:
        """Extend the leases ``node`` still holds on ``job_ids`` (never recreates one)."""
        ids = list(job_ids)
        if not ids:
            return 0
        return int(self._lease(keys=[self.keys.leases, self.keys.lease_holders],
                               args=["renew", self.ttl_ms, node, *ids]))

    def release(self, node: str, job_id: str) -> None:
        """The delivery on ``node`` ended: drop its lease (not one another node took since),
        in one script call."""
        self._lease(keys=[self.keys.leases, self.keys.lease_holders],
                    args=["release", self.ttl_ms, node, job_id])

    def holder(self, job_id: str) -> str | None:
        """The node holding ``job_id`` now, if any."""
        holder = self.redis.hget(self.keys.lease_holders, job_id)
        return holder.split(" ", 1)[0] if holder else None

    def reclaim_expired(self, grace_ms: int, restore: Callable[[str], None] | None = None,
                        batch: int = BATCH) -> list[Reclaimed]:
        """Take back every job whose lease ended; ``restore(tag)`` puts its broker message back
        at the front of its queue. Costs one command when nothing expired."""
        due = self.redis.zrangebyscore(self.keys.leases, "-inf", server_ms(self.redis), start=0,
                                       num=batch)
        taken = []
        for job_id in due:
            k = self.keys
            state, holder = self._reclaim(
                keys=[k.leases, k.lease_holders, k.job(job_id), k.hist(job_id), k.parked,
                      k.uncertain],
                args=[job_id, FALLBACK_MS, grace_ms])
            node, _, tag = (holder or "").partition(" ")
            if state in ("queued", "submitting"):
                taken.append(Reclaimed(job_id, state, node, tag))
                if restore is not None and tag:
                    try:
                        restore(tag)
                    except Exception:  # noqa: BLE001 - the parked fallback still holds it
                        log.exception("job %s: could not put its message back", job_id)
        if taken:
            log.warning("reclaimed %d jobs from dead worker nodes %s", len(taken),
                        sorted({r.node for r in taken}))
        return taken
