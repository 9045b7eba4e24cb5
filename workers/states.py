"""Caller-facing job states and the order they move in (DESIGN.md section 2)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is; transitions only move forward in :data:`RANK` order."""

    #: accepted, waiting for a submit token
    QUEUED = "queued"
    #: a worker holds it and is calling the provider (intent recorded first)
    SUBMITTING = "submitting"
    #: provider accepted; upstream taskId known
    SUBMITTED = "submitted"
    #: upstream TEXT_SUCCESS / callback ``text``
    TEXT_READY = "text_ready"
    #: upstream FIRST_SUCCESS / callback ``first``; first track known
    FIRST_READY = "first_ready"
    #: upstream SUCCESS / callback ``complete``; all tracks known
    SUCCEEDED = "succeeded"
    #: rejected, generation failed, or retries exhausted; carries code and message
    FAILED = "failed"
    #: no result before the job's deadline
    EXPIRED = "expired"
    #: cancelled by the caller before it was submitted
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED})

#: states that have an upstream task to poll
IN_FLIGHT = frozenset({JobState.SUBMITTED, JobState.TEXT_READY, JobState.FIRST_READY})

#: forward order; all terminal states share the top rank (the Lua script holds the same table)
RANK: dict[JobState, int] = {
    JobState.QUEUED: 0,
    JobState.SUBMITTING: 1,
    JobState.SUBMITTED: 2,
    JobState.TEXT_READY: 3,
    JobState.FIRST_READY: 4,
    JobState.SUCCEEDED: 9,
    JobState.FAILED: 9,
    JobState.EXPIRED: 9,
    JobState.CANCELLED: 9,
}
