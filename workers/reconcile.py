"""Reconciliation: poll due upstream tasks, settle uncertain submissions (docs/DESIGN.md section 6).

A cycle costs O(due jobs): due members are leased from the ``poll`` zset in one script call, so
two beats (or a beat restarted mid-cycle) never poll one job twice. A cycle starts polls only for
CYCLE_LEASE_MS after its claim and the lease also covers the longest one poll can take, so no poll
outlives its lease however slow the provider: what a cycle cannot start in time it hands back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..provider import answers as upstream
from ..provider.profiles import Outcome
from .accounts import Account
from .job import Job
from .leases import CYCLE_LEASE_MS
from .limiter import Grant
from .regeneration import apply_reported
from .runtime import Runtime
from .states import IN_FLIGHT, STAGE_STATE, JobState

log = logging.getLogger(__name__)

#: most jobs one cycle claims
CYCLE_LIMIT = 200
#: longest a cycle waits for one poll token before ending early, in seconds
POLL_TOKEN_WAIT_S = 2.0
#: allowance for the Redis round trips of one poll (lease margin), in ms
REDIS_MARGIN_MS = 1_000


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
    """Poll every due job once through its own account (within that account's poll budget
    and the lease) and settle expired uncertain ones. An account whose budget is spent hands
    its jobs back for the next cycle; the others' jobs are still polled."""
    report = CycleReport()
    settle_uncertain(rt, report, limit)
    until = time.monotonic() + CYCLE_LEASE_MS / 1000  # read before the claim: errs on the safe side
    ids = rt.store.claim_due(rt.keys.poll, limit, CYCLE_LEASE_MS + longest_poll_ms(rt))
    report.claimed = len(ids)
    spent: dict[str, int] = {}  # account name -> ms until its poll bucket has a token again
    for index, job_id in enumerate(ids):
        if time.monotonic() >= until:  # a poll started now could outlive the lease
            hand_back(rt, ids[index:], 0, report)
            break
        job = rt.store.get(job_id)
        account = rt.account_named(job.get("account")) if job is not None else rt.primary
        if account is None:  # its account is no longer configured: nobody may poll its task
            unknown_account(rt, job_id, job.get("account") if job else "", report)
            continue
        if account.name in spent:
            hand_back(rt, [job_id], spent[account.name], report)
            continue
        grant = account.poll.acquire(max_wait_s=POLL_TOKEN_WAIT_S)
        if not grant.granted:  # this account's budget is spent: its jobs wait for next cycle
            spent[account.name] = int(grant.wait_s * 1000) + 100
            hand_back(rt, [job_id], spent[account.name], report)
            continue
        poll_one(rt, job_id, report, grant, account, job)
    return report


def unknown_account(rt: Runtime, job_id: str, name: str, report: CycleReport) -> None:
    """A job whose task belongs to an account no longer in BACKBEAT_ACCOUNTS: kept (its
    callbacks still apply) and looked at again after the longest poll delay, so putting the
    account back (or letting it drain, weight 0) resumes its polls."""
    log.error("job %s: its task belongs to account %r, which is not configured: not polled "
              "(restore the account, with weight 0 to drain it)", job_id, name)
    rt.store.reschedule(rt.keys.poll, job_id, int(rt.settings.poll_max_delay_s * 1000))
    report.deferred += 1


def longest_poll_ms(rt: Runtime) -> int:
    """The longest one poll can take once started: token wait, connect, read, Redis."""
    s = rt.settings
    return int((POLL_TOKEN_WAIT_S + s.connect_timeout_s + s.read_timeout_s) * 1000
               + REDIS_MARGIN_MS)


def hand_back(rt: Runtime, ids: list[str], delay_ms: int, report: CycleReport) -> None:
    """Give claimed jobs back to the schedule, due in ``delay_ms`` (the lease still holds)."""
    rt.store.hand_back(rt.keys.poll, ids, delay_ms)
    report.deferred += len(ids)


def poll_one(rt: Runtime, job_id: str, report: CycleReport, grant: Grant | None = None,
             account: Account | None = None, job: Job | None = None) -> None:
    """One record-info call for one leased job through ``account`` (the job's own: the first
    when None), then its transition and next poll time. ``job``: the record as the cycle read
    it (read here when None); every move below is conditional on the state read, so a job
    that moved meanwhile is simply polled again."""
    store = rt.store
    account = account or rt.primary
    job = job or store.get(job_id)
    if job is None or job.state not in IN_FLIGHT or not job.upstream_task_id:
        rt.redis.zrem(rt.keys.poll, job_id)
        account.poll.release(grant)
        return
    answer, _ = account.poll.call(grant, account.client.record_info, job.upstream_task_id)
    report.polled += 1
    report.outcomes[answer.outcome.value] = report.outcomes.get(answer.outcome.value, 0) + 1
    store.annotate(job_id, {"+polls": 1})
    age_ms = store.now_ms() - job.int("submitted_at")
    delay_ms = next_poll_delay_ms(rt, age_ms, bool(job.get("callbacks")))
    if answer.outcome is Outcome.REJECTED:
        # the provider refuses the lookup itself (400/422/451: e.g. a task id it does not
        # know): asked again later (through the next account that may own the task, when
        # there are several), and after BACKBEAT_MAX_ATTEMPTS refusals in a row per such
        # account the job ends with the provider's code and message (its callback may still
        # come first)
        refusals = job.int("poll_refusals") + 1
        owners = owner_candidates(rt, job)
        if refusals >= rt.settings.max_attempts * len(owners):
            result = store.transition(
                job_id, JobState.FAILED, f"poll refused {refusals} times ({answer.code})",
                require_from=job.state,
                fields={"error_code": "" if answer.code is None else str(answer.code),
                        "error_message": answer.message[:500], "poll_refusals": refusals})
            if result.applied:
                return
        else:
            fields: dict = {"poll_refusals": refusals}
            if len(owners) > 1 and account.name in owners:
                # the task may be another account's: a late callback of an earlier attempt
                # (through another account) adopted it; the next poll asks the next one
                fields["account"] = owners[(owners.index(account.name) + 1) % len(owners)]
            store.annotate(job_id, fields)
    if answer.outcome is not Outcome.ACCEPTED:
        # throttle, 455, 401/402/404 (the limiter's report paused or slowed the account),
        # 5xx: the job keeps its task and is polled again
        store.reschedule(rt.keys.poll, job_id, delay_ms)
        return
    if job.int("poll_refusals"):
        store.annotate(job_id, {"poll_refusals": 0})
    update = upstream.from_record(answer.data, account.profile.track_retention_days)
    if update.stage is not None:
        # only on the state read before the call: a callback (or a resubmission) that moved
        # the job meanwhile wins, and the job is simply polled again
        result = apply_reported(rt, job, STAGE_STATE[update.stage], update.reason, update.fields,
                                poll_delay_ms=delay_ms)
        report.moved += int(result.applied)
        if result.applied:
            return
    store.reschedule(rt.keys.poll, job_id, delay_ms)


def owner_candidates(rt: Runtime, job: Job) -> list[str]:
    """The configured accounts that may own the job's task: those its attempts went through
    (``accounts_tried``), else, for a job from before accounts were recorded, every one."""
    configured = [a.name for a in rt.accounts]
    tried = [n for n in (job.get("accounts_tried") or "").split(",") if n in configured]
    return tried or configured


def settle_uncertain(rt: Runtime, report: CycleReport, limit: int) -> list[str]:
    """Jobs whose uncertain grace ended without a callback: resubmit or fail (policy)."""
    ids = rt.store.claim_due(rt.keys.uncertain, limit, CYCLE_LEASE_MS)
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
                                        park_delay_ms=0, fields={"+resubmits": 1})
            if moved.applied:  # and parked in the same step: the pump sends it
                requeued.append(job_id)
        report.uncertain_settled += 1
    if ids:
        log.info("settled %d uncertain submissions (%d requeued)", len(ids), len(requeued))
    return requeued
