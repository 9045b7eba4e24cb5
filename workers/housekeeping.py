"""Housekeeping run by beat: deadlines, the outbox, retention trims.

Each part costs O(due entries): it reads only the front of a time-ordered index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import broker, lanes
from .dispatch import restore_message, send_submit
from .leases import CYCLE_LEASE_MS
from .runtime import Runtime
from .states import ORDER, TERMINAL, JobState

log = logging.getLogger(__name__)

#: entries handled per index per run
BATCH = 500
#: a queued job whose message is nowhere this long after it entered ``queued`` lost it (ms)
LOST_AFTER_MS = 60_000
#: the broker is read for lost messages only while at most this many submit messages wait
BROKER_SCAN_MOST = 2_000


@dataclass
class Report:
    """What one housekeeping run did."""

    expired: int = 0
    resent: int = 0
    trimmed: int = 0
    stale: int = 0
    rescued: int = 0
    reclaimed: int = 0
    lost: int = 0


def run(rt: Runtime) -> Report:
    report = Report()
    report.reclaimed = reclaim_dead_leases(rt)
    report.expired = expire_overdue(rt)
    report.resent = resend_unsent(rt)
    report.trimmed = trim_indexes(rt)
    report.stale = flag_stale_submissions(rt)
    report.rescued = rescue_stranded(rt)
    report.lost = rescue_lost_messages(rt)
    return report


def expire_overdue(rt: Runtime) -> int:
    """Jobs past their deadline become ``expired`` (whatever non-terminal state they are in)."""
    moved = 0
    for job_id in rt.store.claim_due(rt.keys.deadline, BATCH, CYCLE_LEASE_MS):
        result = rt.store.transition(job_id, JobState.EXPIRED, "deadline passed",
                                     fields={"error_code": "deadline",
                                             "error_message": "no result before the deadline"})
        if result.applied:
            moved += 1
            if result.before is JobState.QUEUED:  # it may wait in its producer's lane
                lanes.remove(rt, job_id)
        else:  # already terminal or gone
            rt.redis.zrem(rt.keys.deadline, job_id)
    if moved:
        log.warning("expired %d jobs past their deadline", moved)
    return moved


def reclaim_dead_leases(rt: Runtime) -> int:
    """Jobs held by worker nodes that stopped renewing their leases move again (run by
    housekeeping and by every live node's heartbeat; see workers/leases.py)."""
    grace_ms = int(rt.settings.uncertain_grace_s * 1000)
    return len(rt.leases.reclaim_expired(
        grace_ms, restore=lambda tag: restore_message(rt.settings, tag)))


def resend_unsent(rt: Runtime) -> int:
    """Jobs whose producer crashed between the record and the message get their message. The
    entries are leased as they are read, so a second beat never sends a second message."""
    grace_ms = int(rt.settings.outbox_grace_s * 1000)
    due = rt.store.claim_due(rt.keys.outbox, BATCH, CYCLE_LEASE_MS, min_age_ms=grace_ms)
    resent = 0
    for job_id in due:
        job = rt.store.get(job_id)
        if job is not None and job.state is JobState.QUEUED:
            send_submit(rt.settings, job_id)
            resent += 1
        rt.store.dispatched(job_id)
    if resent:
        log.warning("re-sent %d messages a producer never sent", resent)
    return resent


def flag_stale_submissions(rt: Runtime) -> int:
    """Jobs in ``submitting`` for longer than any live delivery can hold them (a visibility
    timeout and a minute) whose message never came back: treat them as uncertain."""
    stale = rt.redis.zrangebyscore(rt.keys.state("submitting"), "-inf", _stranded_before(rt),
                                   start=0, num=BATCH)
    flagged = 0
    for job_id in stale:
        if rt.redis.zscore(rt.keys.uncertain, job_id) is None:
            flagged += rt.store.annotate(job_id, {"uncertain": "1"},
                                         require_state=JobState.SUBMITTING,
                                         uncertain_delay_ms=0)
    if flagged:
        log.warning("flagged %d stale submissions as uncertain", flagged)
    return flagged


def rescue_stranded(rt: Runtime) -> int:
    """Queued jobs that may have lost their message (older than a visibility timeout and a
    minute) are parked, so the pump sends them again (see rescue_stranded.lua)."""
    parked = rt.store.rescue_stranded(_stranded_before(rt), BATCH)
    if parked:
        log.warning("parked %d long-queued jobs whose message may be lost", parked)
    return parked


def rescue_lost_messages(rt: Runtime) -> int:
    """Queued jobs whose message is nowhere a minute after they entered ``queued`` (not
    waiting in the broker, not delivered, no worker's lease, not parked, not in the outbox) are
    parked, so the pump sends them again (a job in a producer's lane is not lost: the pump
    sends it in its turn). kombu's Redis transport pops a message before it
    records it as unacked: a node or Redis dying in between drops it, and rescue_stranded would
    find it only after a visibility timeout. Each queued entry is examined once, when it turns a
    minute old (a cursor), so a run costs O(newly old entries), not O(backlog). The broker is
    read only while its submit queue is short (BROKER_SCAN_MOST); behind a longer one the cursor
    waits. A spare message is harmless: a submit claims a job only from ``queued`` (one that
    finds it ``submitting`` marks it uncertain, and the attempt in flight clears that)."""
    in_broker = broker.submit_job_ids(rt.broker_redis, rt.keys, BROKER_SCAN_MOST)
    if in_broker is None:
        return 0
    k = rt.keys
    start = rt.redis.get(k.lost_cursor)
    cutoff = rt.store.now_ms() - LOST_AFTER_MS
    entries = rt.redis.zrangebyscore(k.queued, f"({start}" if start else "-inf", cutoff,
                                     start=0, num=BATCH, withscores=True)
    # a full batch may have cut a run of equal scores: the last score is read again next time
    rt.redis.set(k.lost_cursor, cutoff if len(entries) < BATCH else int(entries[-1][1]) - 1)
    ids = [job_id for job_id, _ in entries if job_id not in in_broker]
    if not ids:
        return 0
    pipe = rt.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.zscore(k.parked, job_id)
        pipe.zscore(k.outbox, job_id)
        pipe.zscore(k.leases, job_id)
        pipe.hget(k.lane_of, job_id)  # waiting in its producer's lane: not lost
    found = pipe.execute()
    lost = [job_id for n, job_id in enumerate(ids) if found[4 * n: 4 * n + 4] == [None] * 4]
    if lost:
        now_ms = rt.store.now_ms()
        rt.redis.zadd(k.parked, {job_id: now_ms for job_id in lost}, nx=True)
        log.warning("parked %d queued jobs whose message was lost: %s", len(lost),
                    ", ".join(lost[:10]))
    return len(lost)


def _stranded_before(rt: Runtime) -> int:
    """Server time (ms) before which a job still waiting on its message is stranded: no live
    delivery holds a message longer than a visibility timeout (kombu redelivers then), plus a
    minute for the redelivered message to be taken."""
    return rt.store.now_ms() - int((rt.settings.visibility_timeout_s + 60) * 1000)


def trim_indexes(rt: Runtime) -> int:
    """Drop index entries of jobs whose records passed retention (nothing grows unbounded)."""
    cutoff = rt.store.now_ms() - rt.store.retention_ms
    pipe = rt.redis.pipeline(transaction=False)
    pipe.zremrangebyscore(rt.keys.jobs, "-inf", cutoff)
    for state in ORDER:
        if state in TERMINAL:
            pipe.zremrangebyscore(rt.keys.state(state), "-inf", cutoff)
    return sum(pipe.execute())
