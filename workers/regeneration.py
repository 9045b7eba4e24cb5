"""A state the provider reports for a job's task, applied; a retryable failure becomes a new try.

When a poll or a callback says the task failed with a code the provider documents as worth
retrying (``ProviderProfile.retryable_failure``: kie 500/501/531, sunoapi.org 500, record-info
``CREATE_TASK_FAILED``), and the job has attempts left (``BACKBEAT_MAX_ATTEMPTS``, counted in
``failures`` with transient submit errors), the job goes back to ``queued`` in one script call
(transition.lua's ``resubmit`` mode: off the poll schedule, parked for the pump, the old task
kept in ``previous_task_ids`` so its late callbacks are ignored). Nobody is notified: nothing
ended. Otherwise the failure stands, with the provider's code and message.
"""

from __future__ import annotations

from typing import Any

from .runtime import Runtime
from .states import JobState
from .store import Job, Transition


def apply_reported(rt: Runtime, job: Job, to: JobState, reason: str, fields: dict[str, Any],
                   poll_delay_ms: int | None = None) -> Transition:
    """Move ``job`` (as read, ``require_from`` its state then) to what the provider reported."""
    if to is JobState.FAILED and job.upstream_task_id and _retryable(rt, job, fields):
        tries = job.int("failures") + 1
        if tries < rt.settings.max_attempts:
            return resubmit(rt, job, reason, fields, tries)
        reason = f"{reason} (retryable; gave up after {tries} attempts)"
        fields = {**fields, "+failures": 1}
    return rt.store.transition(job.id, to, reason, require_from=job.state, fields=fields,
                               poll_delay_ms=poll_delay_ms)


def resubmit(rt: Runtime, job: Job, reason: str, fields: dict[str, Any],
             tries: int) -> Transition:
    code = str(fields.get("error_code", ""))
    message = str(fields.get("error_message", ""))[:500]
    return rt.store.transition(
        job.id, JobState.QUEUED,
        f"{reason}: retryable ({code}), resubmitting (attempt {tries + 1} of "
        f"{rt.settings.max_attempts})",
        require_from=job.state, resubmit=True,
        fields={"+failures": 1, "+regenerations": 1, "last_code": code,
                "last_message": message, "-uncertain": "", "-upstream_task_id": "",
                "-tracks": "", "-callbacks": "",
                "previous_task_ids": ",".join([*job.previous_task_ids, job.upstream_task_id])})


def _retryable(rt: Runtime, job: Job, fields: dict[str, Any]) -> bool:
    """Whether the failure is one the job's provider (its account's) says may succeed again."""
    profile = rt.profile_of(job)
    return (profile.retryable_failure(fields.get("error_code", ""))
            or profile.retryable_failure(fields.get("upstream_status", "")))
