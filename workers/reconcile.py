"""Reconciliation: poll due upstream tasks and settle uncertain submissions (DESIGN.md section 6).

A cycle costs O(due jobs): due members are leased from the ``poll`` zset in one script call, so
two beats (or a beat restarted mid-cycle) never poll one job twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..config.providers import Outcome
from . import upstream
from .limiter import Grant
from .runtime import Runtime
from .states import IN_FLIGHT, JobState

log = logging.getLogger(__name__)

#: most jobs one cycle claims
CYCLE_LIMIT = 200
#: how long a claimed job stays invisible to other reconcilers, in ms
LEASE_MS = 60_000
#: longest a cycle waits for one poll token before ending early, in seconds
POLL_TOKEN_WAIT_S = 2.0


@dataclass
class CycleReport:
    """What one reconcile cycle did."""

    claimed: int = 0
    polled: int = 0
    moved: int = 0
    deferred: int = 0
    uncertain_settled: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def next_poll_delay_ms(rt: Runtime, age_ms: int, callbacks_seen: bool) -> int:
    """Poll young jobs often and old ones rarely; a job whose callbacks arrive is only checked
    as a safety net (three times less often)."""
    s = rt.settings
    delay_s = min(s.poll_max_delay_s, max(s.poll_min_delay_s, age_ms / 1000 / 4))
    if callbacks_seen:
        delay_s = min(s.poll_max_delay_s, delay_s * 3)
    return int(delay_s * 1000)


def run_cycle(rt: Runtime, limit: int = CYCLE_LIMIT) -> CycleReport:
    """Poll every due job once (within the poll budget) and settle expired uncertain ones."""
    report = CycleReport()
    settle_uncertain(rt, report, limit)
    ids = rt.store.claim_due(rt.keys.poll, limit, LEASE_MS)
    report.claimed = len(ids)
    for index, job_id in enumerate(ids):
        grant = rt.poll_limiter.acquire(max_wait_s=POLL_TOKEN_WAIT_S)
        if not grant.granted:  # budget spent: hand the rest back for the next cycle
            for rest in ids[index:]:
                rt.store.reschedule(rt.keys.poll, rest, int(grant.wait_s * 1000) + 100)
            report.deferred += len(ids) - index
            break
        poll_one(rt, job_id, report, grant)
    return report


def poll_one(rt: Runtime, job_id: str, report: CycleReport, grant: Grant | None = None) -> None:
    """One record-info call for one leased job, then its transition and next poll time."""
    store = rt.store
    job = store.get(job_id)
    if job is None or job.state not in IN_FLIGHT or not job.upstream_task_id:
        rt.redis.zrem(rt.keys.poll, job_id)
        rt.poll_limiter.release(grant)
        return
    answer, _ = rt.poll_limiter.call(grant, rt.provider.record_info, job.upstream_task_id)
    report.polled += 1
    report.outcomes[answer.outcome.value] = report.outcomes.get(answer.outcome.value, 0) + 1
    store.annotate(job_id, {"+polls": 1})
    age_ms = store.now_ms() - job.int("submitted_at")
    delay_ms = next_poll_delay_ms(rt, age_ms, bool(job.get("callbacks")))
    if answer.outcome is not Outcome.ACCEPTED:
        store.reschedule(rt.keys.poll, job_id, delay_ms)
        return
    update = upstream.from_record(answer.data)
    if update.state is not None:
        result = store.transition(job_id, update.state, update.reason, fields=update.fields,
                                  poll_delay_ms=delay_ms)
        report.moved += int(result.applied)
        if result.applied:
            return
    store.reschedule(rt.keys.poll, job_id, delay_ms)


def settle_uncertain(rt: Runtime, report: CycleReport, limit: int) -> list[str]:
    """Jobs whose uncertain grace ended without a callback: resubmit or fail (policy)."""
    ids = rt.store.claim_due(rt.keys.uncertain, limit, LEASE_MS)
    requeued = []
    for job_id in ids:
        job = rt.store.get(job_id)
        if job is None or job.state is not JobState.SUBMITTING:
            rt.redis.zrem(rt.keys.uncertain, job_id)
            continue
        attempt = job.get("attempt_id")
        if rt.settings.uncertain_policy == "fail":
            rt.store.transition(job_id, JobState.FAILED, "uncertain submission not adopted",
                                require_attempt=attempt,
                                fields={"error_code": "uncertain",
                                        "error_message": "no callback within the grace period"})
        else:
            moved = rt.store.transition(job_id, JobState.QUEUED,
                                        "uncertain submission not adopted: resubmitting",
                                        require_from=JobState.SUBMITTING, require_attempt=attempt,
                                        fields={"+resubmits": 1})
            if moved.applied:
                requeued.append(job_id)
        report.uncertain_settled += 1
    for job_id in requeued:  # parked, so the pump sends it (crash-safe: leased until claimed)
        rt.store.park(job_id)
    if ids:
        log.info("settled %d uncertain submissions (%d requeued)", len(ids), len(requeued))
    return requeued
