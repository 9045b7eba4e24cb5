"""Caller-facing job states, their order and the moves between them (docs/DESIGN.md section 2).

This module is the one definition of the state machine. The Lua scripts that move jobs
(transition.lua, annotate.lua) do not carry their own tables: ``scripts.py`` writes
:func:`lua_tables` into them where they say ``--#include states`` when it loads them, and
``tests/unit/test_state_machine.py`` runs every move through the script against :func:`allowed`.
"""

from __future__ import annotations

from enum import StrEnum

from ..provider.callbacks import Stage


class JobState(StrEnum):
    """Where a job is; it moves forward in the order written here (see :func:`allowed`)."""

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


class Mode(StrEnum):
    """How a transition may move a job (transition.lua's ARGV ``mode``)."""

    #: forward only (one step back: submitting -> queued, the call did not happen)
    FORWARD = ""
    #: a caller's retry of a dead letter: failed / expired -> queued
    RETRY = "retry"
    #: the provider failed a submitted task with a code it calls retryable: -> queued, parked
    RESUBMIT = "resubmit"


#: every state, in forward order (also the order of the per-state index keys transition.lua takes)
ORDER: tuple[JobState, ...] = tuple(JobState)
TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED})
#: states that have an upstream task to poll
IN_FLIGHT = frozenset({JobState.SUBMITTED, JobState.TEXT_READY, JobState.FIRST_READY})
#: forward rank: the position in ORDER; every terminal state shares the top rank
TOP = len(ORDER)
RANK: dict[JobState, int] = {s: TOP if s in TERMINAL else i for i, s in enumerate(ORDER)}
#: the states a caller may cancel a job from (nothing was sent yet)
CANCELLABLE = frozenset({JobState.QUEUED})
#: the one backward move of a forward transition: the call was never made, or not recorded
BACK_TO_QUEUE = frozenset({JobState.SUBMITTING})
#: the states a caller's retry starts from (dead letters)
RETRY_FROM = frozenset({JobState.FAILED, JobState.EXPIRED})
#: the states a resubmission starts from (a task exists and failed with a retryable code)
RESUBMIT_FROM = IN_FLIGHT
#: the state a job moves to when the provider reports its task reached a stage (a callback's
#: ``callbackType``, or a record-info status: provider/answers.py)
STAGE_STATE: dict[Stage, JobState] = {
    Stage.TEXT: JobState.TEXT_READY,
    Stage.FIRST: JobState.FIRST_READY,
    Stage.COMPLETE: JobState.SUCCEEDED,
    Stage.ERROR: JobState.FAILED,
}


def allowed(cur: JobState, to: JobState, mode: Mode = Mode.FORWARD) -> bool:
    """Whether transition.lua moves a job from ``cur`` to ``to`` in ``mode``."""
    if mode is Mode.RETRY:
        return to is JobState.QUEUED and cur in RETRY_FROM
    if mode is Mode.RESUBMIT:
        return to is JobState.QUEUED and cur in RESUBMIT_FROM
    if cur in TERMINAL or cur is to:
        return False
    if to is JobState.CANCELLED and cur not in CANCELLABLE:
        return False
    return RANK[to] > RANK[cur] or (to is JobState.QUEUED and cur in BACK_TO_QUEUE)


def lua_tables() -> str:
    """The state machine as Lua locals (STATES, RANK, TOP, TERMINAL, CANCELLABLE,
    BACK_TO_QUEUE, RETRY_FROM, RESUBMIT_FROM), written into the scripts at load time."""

    def lua_set(states: frozenset[JobState]) -> str:
        return "{" + ", ".join(f"{s.value} = true" for s in ORDER if s in states) + "}"

    return "\n".join([
        "local STATES = {" + ", ".join(f"'{s.value}'" for s in ORDER) + "}",
        "local RANK = {" + ", ".join(f"{s.value} = {RANK[s]}" for s in ORDER) + "}",
        f"local TOP = {TOP}",
        f"local TERMINAL = {lua_set(TERMINAL)}",
        f"local CANCELLABLE = {lua_set(CANCELLABLE)}",
        f"local BACK_TO_QUEUE = {lua_set(BACK_TO_QUEUE)}",
        f"local RETRY_FROM = {lua_set(RETRY_FROM)}",
        f"local RESUBMIT_FROM = {lua_set(RESUBMIT_FROM)}",
    ])
