"""Submitting one job: token, intent, provider call, outcome (docs/DESIGN.md sections 3-5).

``submit_job`` never raises for an expected provider answer. Short waits (a token a few seconds
away, a throttle cool-down) are slept inline; long ones (breaker open, account paused, backoff
after a transient error) park the job in Redis, where the pump finds it again: no broker
countdown ever outlives the visibility timeout.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from ..provider.client import Answer
from ..provider.profiles import Outcome
from . import node
from .accounts import Account, Choice, choose, weighted_order
from .dispatch import send_submit, wake_lease_ms
from .limiter import GATED, Effect
from .resilience import Backoff
from .runtime import Runtime
from .signing import callback_url
from .states import JobState
from .store import Job

log = logging.getLogger(__name__)

#: longest a worker sleeps inline for a submit token before parking the job, in seconds
#: (and never more than a tenth of the broker's visibility timeout)
MAX_INLINE_WAIT_S = 30.0
#: longest one delivery may hold a job across throttle answers, in seconds (and never more
#: than a quarter of the visibility timeout)
MAX_HOLD_S = 120.0
#: backoff for transient errors: full jitter over base * 2**n, capped (seconds)
BACKOFF = Backoff(base_s=1.0, cap_s=60.0)


@dataclass(frozen=True)
class Step:
    """What happened to the job in this delivery (for the log and the task's return value)."""

    reason: str
    #: the job left queued/submitting in this delivery: its lease went with that transition
    #: (transition.lua), the node has none to release
    released: bool = False


def submit_job(rt: Runtime, job_id: str) -> Step:
    """Take one queued job through the limiter to the provider and record what happened."""
    job, first = _read_with_token(rt, job_id)
    if job is None or job.state is not JobState.QUEUED:
        if first is not None:
            first.account.submit.release(first.grant)
        if job is None:
            return Step("no such job (expired or never created)")
        if job.state is JobState.SUBMITTING:
            return _redelivered_in_flight(rt, job_id)
        return Step(f"already {job.state.value}")

    started = time.monotonic()
    # every account an attempt of this job went through: a late callback may adopt a task of
    # any of them, and reconcile then finds which one owns it (reconcile.owner_candidates)
    tried = [name for name in (job.get("accounts_tried") or "").split(",") if name]
    vt = rt.settings.visibility_timeout_s
    max_wait, max_hold = min(MAX_INLINE_WAIT_S, vt / 10), min(MAX_HOLD_S, vt / 4)
    while True:
        if first is not None:  # the token read with the job
            choice, first = first, None
        else:
            first = None
            try:  # the first account (weighted order) that can take it
                choice = choose(rt.accounts, max_wait_s=max_wait, sleep=node.nap)
            except node.Draining:  # this node is shutting down: another node takes it now
                hand_over(rt, job_id)
                return Step("worker draining: handed to another node")
        account, grant = choice.account, choice.grant
        if account is None:
            rt.store.park(job_id, 0 if grant.kind in GATED else int(grant.wait_s * 1000))
            return Step(f"parked ({grant.kind})")
        attempt_id = uuid.uuid4().hex
        tried = tried if account.name in tried else [*tried, account.name]
        claim = rt.store.transition(
            job_id, JobState.SUBMITTING, "submit", require_from=JobState.QUEUED,
            fields={"attempt_id": attempt_id, "+attempts": 1, "account": account.name,
                    "accounts_tried": ",".join(tried)},
            account=account.id,
        )
        if not claim.applied:
            account.submit.release(grant)
            return Step(f"claimed elsewhere ({claim.before.value if claim.before else 'gone'})")
        answer, effect = account.submit.call(grant, account.client.create, job.type, job.params,
                                             callback_url(rt.settings, rt.secret, job_id))
        if effect not in (Effect.NONE, Effect.RAISED):
            log.warning("limiter: %s after %s (code %s, account %s)", effect,
                        answer.outcome.value, answer.code, account.name)
        step = record_answer(rt, job_id, attempt_id, answer, account)
        if step is not None:
            return step
        if time.monotonic() - started > max_hold:
            rt.store.park(job_id)
            return Step("throttled repeatedly: parked")


def _read_with_token(rt: Runtime, job_id: str) -> tuple[Job | None, Choice | None]:
    """The job and, in the same round trip, a submit token from the first account in
    weighted order: a Choice with that account when granted (None when refused: the caller's
    ``choose`` asks every account again, sleeping as it must)."""
    order = weighted_order(rt.accounts)
    pipe = rt.redis.pipeline(transaction=False)
    rt.store.read_on(pipe, job_id)
    read = order[0].submit.try_acquire_on(pipe) if order else None
    replies = pipe.execute(raise_on_error=False)
    for reply in replies[:2]:
        if isinstance(reply, Exception):
            if read is not None:  # a token nobody will use
                try:
                    order[0].submit.release(read(replies[2]))
                except Exception:  # noqa: BLE001 - the read's error is the one to raise
                    log.warning("job %s: token not given back", job_id, exc_info=True)
            raise reply
    job = rt.store.job_from(replies[0], replies[1])
    if read is None:
        return job, None
    grant = read(replies[2])
    return job, Choice(order[0], grant) if grant.granted else None


def hand_over(rt: Runtime, job_id: str) -> None:
    """Send a queued job to another node at the front of the line, as the pump would: parked
    first, leased, so a message lost on the way is sent again by the pump."""
    rt.store.park(job_id, wake_lease_ms(rt.settings))
    send_submit(rt.settings, job_id, front=True)


def record_answer(rt: Runtime, job_id: str, attempt_id: str, answer: Answer,
                  account: Account | None = None) -> Step | None:
    """Apply one provider answer (read with ``account``'s provider table: the first account
    when None); None means 'back to queued: choose an account and try again now' (a throttle;
    or, with several accounts, an answer that gated this one)."""
    store, outcome = rt.store, answer.outcome
    account = account or rt.primary
    log.info("job %s attempt %s: %s (code %s, account %s)", job_id, attempt_id, outcome.value,
             answer.code, account.name,
             extra={"job": job_id, "account": account.id, "attempt": attempt_id,
                    "outcome": outcome.value, "code": answer.code})
    if outcome is Outcome.ACCEPTED:
        moved = store.transition(
            job_id, JobState.SUBMITTED, "provider accepted", require_attempt=attempt_id,
            poll_delay_ms=int(rt.settings.poll_min_delay_s * 1000),
            fields={"upstream_task_id": answer.task_id},
        )
        # not applied: a callback (of an earlier, uncertain attempt) got there first, or the
        # job ended meanwhile; if it names another task, this one is a paid duplicate
        if not moved.applied and store.add_duplicate(job_id, answer.task_id or ""):
            log.warning("job %s: accepted task %s after another was adopted: duplicate",
                        job_id, answer.task_id)
        return Step("submitted", released=moved.applied)
    if outcome is Outcome.REJECTED:
        moved = store.transition(job_id, JobState.FAILED,
                                 f"rejected by provider ({answer.code})",
                                 require_attempt=attempt_id, fields=_error(answer))
        return Step("rejected", released=moved.applied)
    if outcome is Outcome.UNCERTAIN:
        grace_ms = int(rt.settings.uncertain_grace_s * 1000)
        store.annotate(job_id, {"uncertain": "1", **_error(answer)},
                       require_state=JobState.SUBMITTING, uncertain_delay_ms=grace_ms)
        return Step("uncertain: waiting for a callback to adopt it")
    if outcome is Outcome.THROTTLED:  # never counts against the job's retry budget
        _requeue(rt, job_id, attempt_id, answer, "throttled", {"+throttled": 1})
        return None
    if outcome in (Outcome.MAINTENANCE, Outcome.CREDITS, Outcome.UNAUTHORIZED,
                   Outcome.NOT_FOUND):
        if outcome is Outcome.UNAUTHORIZED:
            log.error("provider refused the API key of account %s (code %s): check "
                      "BACKBEAT_API_KEY / BACKBEAT_ACCOUNTS; its submissions are paused",
                      account.name, answer.code)
        if outcome is Outcome.NOT_FOUND:
            log.error("provider answered %s (invalid request method or path) to account %s: "
                      "check BACKBEAT_API_BASE_URL and BACKBEAT_PROVIDER (or the account's "
                      "base_url and provider); its submissions are paused", answer.code,
                      account.name)
        if sum(a.weight > 0 for a in rt.accounts) > 1:
            # this account is gated now (report.lua opened its breaker or paused it): the
            # job goes on at once through another one, or is parked when none can take it
            _requeue(rt, job_id, attempt_id, answer, outcome.value, {})
            return None
        _requeue(rt, job_id, attempt_id, answer, outcome.value, {}, park_delay_ms=0)
        return Step(f"{outcome.value}: parked")
    # transient: bounded retries with exponential backoff and full jitter
    job = store.get(job_id)
    failures = (job.int("failures") if job else 0) + 1
    if failures >= rt.settings.max_attempts:
        store.transition(job_id, JobState.FAILED, f"gave up after {failures} transient errors",
                         require_attempt=attempt_id,
                         fields={**_error(answer), "failures": failures})
        return Step("transient errors exhausted")
    delay_s = BACKOFF.delay_s(failures)
    _requeue(rt, job_id, attempt_id, answer, "transient", {"+failures": 1},
             park_delay_ms=int(delay_s * 1000))
    return Step(f"transient error: retry in {delay_s:.1f} s")


def _requeue(rt: Runtime, job_id: str, attempt_id: str, answer: Answer, reason: str,
             extra: dict, park_delay_ms: int | None = None) -> None:
    """Back to ``queued`` (and parked, when ``park_delay_ms`` is given) in one script call."""
    rt.store.transition(job_id, JobState.QUEUED, reason, require_from=JobState.SUBMITTING,
                        require_attempt=attempt_id, park_delay_ms=park_delay_ms,
                        fields={"last_code": answer.code or "", "last_message": answer.message,
                                **extra})


def _redelivered_in_flight(rt: Runtime, job_id: str) -> Step:
    """A message for a job already in ``submitting``: its call may have reached the provider.
    Never resubmit at once; give it the grace period to be adopted by a callback."""
    grace_ms = int(rt.settings.uncertain_grace_s * 1000)
    rt.store.annotate(job_id, {"uncertain": "1"}, require_state=JobState.SUBMITTING,
                      uncertain_delay_ms=grace_ms)
    return Step("redelivered while submitting: uncertain")


def _error(answer: Answer) -> dict[str, str]:
    return {"error_code": "" if answer.code is None else str(answer.code),
            "error_message": answer.message[:500]}
