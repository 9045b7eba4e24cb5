"""backbeat's exceptions: everything the Python client raises is one of these.

``BackbeatError`` is the root; ``ValidationError`` (HTTP 422), ``JobNotFound`` (404),
``Conflict`` (409: ``IdempotencyConflict``, ``InvalidTransition``), ``WaitTimeout`` and
``Unavailable`` (Redis or the broker not answering; 503 over HTTP) derive from it.
"""

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


class Conflict(BackbeatError):
    """Raised when a request clashes with what is already stored (HTTP 409): an idempotency key
    reused with other parameters, or a move the job's state forbids."""


class IdempotencyConflict(Conflict):
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


class InvalidTransition(Conflict):
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


class Unavailable(BackbeatError, ConnectionError):
    """Raised when Redis (the job store, or the broker) cannot be reached or stops answering;
    ``what`` names it ("Redis", "broker") and ``url`` is its URL with any password redacted."""

    def __init__(self, what: str, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {what} at {url}: {reason}")
        self.what = what
        self.url = url
        self.reason = reason


class QuotaExceeded(BackbeatError):
    """The producer's quota (BACKBEAT_PRODUCERS ``quota``) allows no new job yet; HTTP 429
    with ``Retry-After``."""

    def __init__(self, producer: str, quota: str, retry_after_s: float) -> None:
        self.producer, self.quota, self.retry_after_s = producer, quota, retry_after_s
        super().__init__(f"producer {producer!r} reached its quota of {quota} jobs: retry in "
                         f"{retry_after_s:.1f} s")


class BudgetExceeded(BackbeatError):
    """The producer's credit budget (BACKBEAT_PRODUCERS ``credit_budget``) cannot pay for one
    more job at the accounts' cost; HTTP 402."""

    def __init__(self, producer: str, budget: float, reserved: float, cost: float) -> None:
        self.producer, self.budget, self.reserved, self.cost = producer, budget, reserved, cost
        super().__init__(f"producer {producer!r} would pass its credit budget of {budget:g}: "
                         f"{reserved:g} reserved by its jobs, one more costs {cost:g}")
