"""The Python producer client, straight against Redis.

Example::

    from backbeat.api.client import Client
    client = Client()                      # BACKBEAT_* environment
    job = client.enqueue("add-vocals", {...provider fields...}, idempotency_key="order-17")
    done = client.wait(job["id"], timeout=600)

Jobs: ``enqueue``, ``get``, ``wait``, ``follow``, ``history``, ``cancel``, ``retry``, ``list``;
the transition stream of every job: ``events``; the shared limiter: ``limiter``, ``pause``,
``resume``. Every method raises backbeat's own errors only (``backbeat.workers.errors``):

``ValidationError``  a bad argument; ``.messages`` maps each field to its texts (as HTTP 422)
``JobNotFound``      no job has that id (never existed, or its record expired)
``Conflict``         ``IdempotencyConflict`` (key reused, other request) or
                     ``InvalidTransition`` (e.g. cancel after submission), as HTTP 409
``WaitTimeout``      ``wait`` gave up before the job reached the state waited for
``Unavailable``      Redis (store or broker) unreachable or not answering; its message names
                     the URL, password redacted

Warning: ``wait`` and ``follow`` read the event stream (XREAD BLOCK); they do not poll the job.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import marshmallow
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config.producers import DEFAULT as DEFAULT_PRODUCER
from ..config.producers import NAME as PRODUCER_NAME
from ..config.redis_urls import redact
from ..config.settings import Settings, get_settings
from ..workers import jobs
from ..workers.accounts import pick
from ..workers.errors import Unavailable, ValidationError, WaitTimeout
from ..workers.overview import overview
from ..workers.runtime import Runtime
from ..workers.states import TERMINAL, JobState
from ..workers.status import limiter_status
from .schemas import ListArgs

#: the longest single block of ``events`` (ms); a longer wait is a loop of calls
MAX_BLOCK_MS = 60_000


class Client:
    """A producer/caller handle; cheap to create, safe to share within a thread."""

    def __init__(self, settings: Settings | None = None) -> None:
        """ValueError (as ``get_settings``) for a bad BACKBEAT_* value or Redis URL; nothing is
        connected yet."""
        self._rt = Runtime(settings or get_settings())
        try:
            self._rt.redis  # noqa: B018 - parse the URL now (redis-py connects on first use)
        except ValueError as err:
            raise ValueError(f"BACKBEAT_REDIS_URL {redact(self._rt.settings.redis_url)!r}: "
                             f"{err}") from None

    # -- jobs -------------------------------------------------------------------------------

    def enqueue(
        self,
        type: str,  # noqa: A002 - the public name of the field
        params: dict[str, Any],
        idempotency_key: str | None = None,
        priority: int = 0,
        notify_url: str | None = None,
        producer: str = DEFAULT_PRODUCER,
    ) -> dict[str, Any]:
        """Validate and queue one job as ``producer`` (its lane and share); raises
        ValidationError (``.messages``: the field messages HTTP answers under
        ``errors.json``), QuotaExceeded or IdempotencyConflict (a Conflict)."""
        if not isinstance(producer, str) or not PRODUCER_NAME.match(producer):
            raise ValidationError({"producer": [
                "1-63 letters, digits, '.', '_' or '-' (starting with a letter or digit)."]})
        request: dict[str, Any] = {"type": type, "params": params, "priority": priority}
        if idempotency_key is not None:
            request["idempotency_key"] = idempotency_key
        if notify_url is not None:
            request["notify_url"] = notify_url
        with self._reaching():
            job, _ = jobs.enqueue(self._rt, request, producer=producer)
        return job.to_public()

    def position(self, job_id: str) -> dict[str, Any] | None:
        """Where a queued job waiting in its producer's lane stands: ``lane``, ``position``
        (its lane's jobs ahead), ``ahead`` (jobs the pump takes before it), ``rate_per_s`` and
        ``predicted_submit_at``; None for a job in no lane. Raises JobNotFound."""
        with self._reaching():
            return jobs.queue_position(self._rt, jobs.get(self._rt, _job_id(job_id)))

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as callers see it; raises JobNotFound."""
        with self._reaching():
            return jobs.get(self._rt, _job_id(job_id)).to_public()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job not yet submitted; raises JobNotFound, or InvalidTransition (a
        Conflict) once it was submitted."""
        with self._reaching():
            return jobs.cancel(self._rt, _job_id(job_id)).to_public()

    def retry(self, job_id: str) -> dict[str, Any]:
        """Requeue a failed or expired job; raises JobNotFound, or InvalidTransition (a
        Conflict) in any other state."""
        with self._reaching():
            return jobs.retry(self._rt, _job_id(job_id)).to_public()

    def history(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """The job's transitions, oldest first (``t`` in ms, ``from``, ``to``, ``reason``);
        raises JobNotFound."""
        job_id = _job_id(job_id)
        with self._reaching():
            found = self._rt.store.history(job_id)
            if not found:
                jobs.get(self._rt, job_id)  # JobNotFound, unless it exists with no history
        return found

    def list(self, state: str | None = None, type: str | None = None,  # noqa: A002
             limit: int = 50, cursor: str | None = None
             ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """One page of jobs, newest first, and the cursor of the next page (or None).

        ``state`` a JobState value, ``type`` a job type, ``limit`` 1..200, ``cursor`` one this
        method (or ``GET /v1/jobs``) returned; anything else raises ValidationError naming the
        field, with the messages HTTP gives under ``errors.query``."""
        given = {"state": state, "type": type, "limit": limit, "cursor": cursor}
        try:
            args = ListArgs().load({k: v for k, v in given.items() if v is not None})
        except marshmallow.ValidationError as err:
            raise ValidationError(err.messages) from None
        with self._reaching():
            try:
                found, nxt = self._rt.store.list(
                    JobState(args["state"]) if args.get("state") else None, args.get("type"),
                    args["limit"], args.get("cursor"))
            except ValueError:
                raise ValidationError({"cursor": ["Not a cursor from this API."]}) from None
        return [job.to_public() for job in found], nxt

    def wait(self, job_id: str, timeout: float = 600.0,
             until: frozenset[JobState] = TERMINAL) -> dict[str, Any]:
        """Block until the job reaches a state in ``until``; raises JobNotFound, WaitTimeout."""
        for job in self.follow(job_id, timeout):
            if JobState(job["state"]) in until:
                return job
        raise WaitTimeout(job_id, self.get(job_id)["state"])

    def follow(self, job_id: str, timeout: float = 600.0) -> Iterator[dict[str, Any]]:
        """The job now and after each of its transitions, until terminal or ``timeout``
        seconds. JobNotFound is raised here, before iterating; Unavailable while iterating."""
        job_id = _job_id(job_id)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
            raise ValidationError({"timeout": ["Must be a number of seconds, 0 or more."]})
        with self._reaching():
            last_id = self._stream_tail()
            job = jobs.get(self._rt, job_id).to_public()
        return self._follow(job, last_id, timeout)

    # -- every job's transitions ------------------------------------------------------------

    def events(self, last_id: str = "$", block_ms: int | None = 5000, count: int = 100
               ) -> builtins.list[tuple[str, dict[str, str]]]:
        """Transition events after stream id ``last_id`` (``"$"``: only new ones), waiting up
        to ``block_ms`` for one (None: do not wait), at most ``count``; each is
        ``(stream_id, {"job", "from", "to", "reason", "t"})``. Pass the last stream id back as
        ``last_id`` to read on."""
        errors: dict[str, builtins.list[str]] = {}
        if not isinstance(last_id, str) or not last_id:
            errors["last_id"] = ["Must be a stream id or '$'."]
        if block_ms is not None and (not _is_int(block_ms) or not 0 <= block_ms <= MAX_BLOCK_MS):
            errors["block_ms"] = [f"Must be an integer from 0 to {MAX_BLOCK_MS}, or None."]
        if not _is_int(count) or count < 1:
            errors["count"] = ["Must be an integer of at least 1."]
        if errors:
            raise ValidationError(errors)
        with self._reaching():
            try:
                return self._rt.store.read_events(last_id, block_ms=block_ms, count=count)
            except ResponseError:  # e.g. "Invalid stream ID specified as stream command argument"
                raise ValidationError({"last_id": ["Must be a stream id or '$'."]}) from None

    # -- the shared limiter -----------------------------------------------------------------

    def limiter(self) -> dict[str, Any]:
        """The limiter and backlog of this provider account: rates, tokens, cool-down,
        breaker, pause, backlog sizes (what ``GET /v1/limiter`` answers)."""
        with self._reaching():
            return limiter_status(self._rt)

    def overview(self) -> dict[str, Any]:
        """The fleet at a glance (what ``GET /v1/status``, the status page and ``backbeat
        watch`` show): jobs by state, calls in the submit window against the rule, throttles,
        breaker, pause, the latest failures and paid duplicates."""
        with self._reaching():
            return overview(self._rt)

    def pause(self, reason: str = "manual", account: str | None = None) -> None:
        """Pause submissions fleet-wide (jobs stay queued) until ``resume``: through every
        account, or only through ``account`` (its name)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError({"reason": ["Must be a non-empty string."]})
        with self._reaching():
            for acct in self._accounts(account):
                acct.submit.pause(reason)

    def resume(self, account: str | None = None) -> None:
        """Lift a pause (manual, credits or unauthorized) at once: on every account, or on
        ``account`` only."""
        with self._reaching():
            for acct in self._accounts(account):
                acct.submit.resume()

    def _accounts(self, name: str | None) -> tuple[Any, ...]:
        try:
            return pick(self._rt.accounts, name)
        except ValueError as exc:
            raise ValidationError({"account": [str(exc)]}) from None

    # -- private ----------------------------------------------------------------------------

    def _follow(self, job: dict[str, Any], last_id: str, timeout: float
                ) -> Iterator[dict[str, Any]]:
        job_id = job["id"]
        yield job
        deadline = time.monotonic() + timeout
        while JobState(job["state"]) not in TERMINAL:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return
            with self._reaching():
                events = self._rt.store.read_events(last_id, block_ms=min(remaining_ms, 5000),
                                                    count=500)
            if not events:
                continue
            last_id = events[-1][0]
            if any(fields.get("job") == job_id for _, fields in events):
                job = self.get(job_id)
                yield job

    def _stream_tail(self) -> str:
        last = self._rt.store.latest_events(1)
        return last[0][0] if last else "0-0"

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Redis or the broker failing to answer, as backbeat's Unavailable."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as err:
            raise Unavailable("Redis", redact(self._rt.settings.redis_url),
                              _reason(err)) from err
        except BrokerError as err:
            raise Unavailable("the broker", redact(self._rt.settings.broker_url),
                              _reason(err)) from err


def _job_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or not job_id:
        raise ValidationError({"job_id": ["Must be a non-empty string."]})
    return job_id


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason(err: Exception) -> str:
    """The error's own text on one line (redis-py's may span several, and a Sentinel's quotes
    the repr of each client it asked), passwords redacted."""
    text = re.sub(r"\s*:?\s*<redis\.[^ ]*\(.*\)>", "", " ".join(str(err).split()))
    return redact(text.strip(" :-")) or type(err).__name__

