"""Exceptions."""

from __future__ import annotations

import marshmallow


class BackbeatError(Exception):
    """Raised for any backbeat failure; the root of this hierarchy."""


class ValidationError(BackbeatError, marshmallow.ValidationError, ValueError):
    """Raised when a producer's request is invalid; ``messages`` maps field -> list of texts.

    A subclass of marshmallow's error too, so ``except marshmallow.ValidationError`` still
    matches and ``messages`` keeps its shape.
    """

    def __init__(self, messages: dict) -> None:
        marshmallow.ValidationError.__init__(self, messages)
        self.args = (f"invalid request: {messages}",)


class IdempotencyConflict(BackbeatError):
    """Raised when an idempotency key is reused with different parameters."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key already used for job {job_id} with other parameters")
        self.key = key
        self.job_id = job_id


class JobNotFound(BackbeatError, LookupError):
    """Raised when no job has the given id (never existed, or its record expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class InvalidTransition(BackbeatError):
    """Raised when a caller asks for a move the state machine forbids (e.g. cancel after submit)."""

    def __init__(self, job_id: str, state: str, wanted: str) -> None:
        super().__init__(f"job {job_id} is {state}; it cannot become {wanted}")
        self.job_id = job_id
        self.state = state
        self.wanted = wanted


class WaitTimeout(BackbeatError, TimeoutError):
    """Raised when ``wait`` gives up before the job reached a terminal state."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} still {state} when the wait ended")
        self.job_id = job_id
        self.state = state
