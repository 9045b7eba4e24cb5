"""The Python producer client: ``enqueue``, ``get`` and ``wait``, straight against Redis.

Example::

    from backbeat.api.client import Client
    client = Client()                      # BACKBEAT_* environment
    job = client.enqueue("add-vocals", {...provider fields...}, idempotency_key="order-17")
    done = client.wait(job["id"], timeout=600)

Warning: ``wait`` follows the event stream (XREAD BLOCK); it does not poll the job record.
"""

from __future__ import annotations

import time
from typing import Any

from ..config.settings import Settings, get_settings
from ..workers import jobs
from ..workers.errors import WaitTimeout
from ..workers.runtime import Runtime
from ..workers.states import TERMINAL, JobState


class Client:
    """A producer/caller handle; cheap to create, safe to share within a thread."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.rt = Runtime(settings or get_settings())

    def enqueue(
        self,
        type: str,  # noqa: A002 - the public name of the field
        params: dict[str, Any],
        idempotency_key: str | None = None,
        priority: int = 0,
        notify_url: str | None = None,
    ) -> dict[str, Any]:
        """Validate and queue one job; raises backbeat's ValidationError (``.messages``: the
        field messages HTTP answers under ``errors.json``) or IdempotencyConflict."""
        request: dict[str, Any] = {"type": type, "params": params, "priority": priority}
        if idempotency_key is not None:
            request["idempotency_key"] = idempotency_key
        if notify_url is not None:
            request["notify_url"] = notify_url
        job, _ = jobs.enqueue(self.rt, request)
        return job.to_public()

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as callers see it; raises JobNotFound."""
        return jobs.get(self.rt, job_id).to_public()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job not yet submitted; raises InvalidTransition otherwise."""
        return jobs.cancel(self.rt, job_id).to_public()

    def retry(self, job_id: str) -> dict[str, Any]:
        """Requeue a failed or expired job; raises InvalidTransition otherwise."""
        return jobs.retry(self.rt, job_id).to_public()

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """The job's transitions, oldest first."""
        return self.rt.store.history(job_id)

    def list(self, state: str | None = None, type: str | None = None,  # noqa: A002
             limit: int = 50, cursor: str | None = None) -> tuple[list[dict], str | None]:
        """One page of jobs, newest first, and the cursor of the next page (or None)."""
        found, nxt = self.rt.store.list(JobState(state) if state else None, type, limit, cursor)
        return [job.to_public() for job in found], nxt

    def wait(self, job_id: str, timeout: float = 600.0,
             until: frozenset[JobState] = TERMINAL) -> dict[str, Any]:
        """Block until the job reaches a state in ``until``; raises WaitTimeout."""
        for job in self.follow(job_id, timeout):
            if JobState(job["state"]) in until:
                return job
        raise WaitTimeout(job_id, self.get(job_id)["state"])

    def follow(self, job_id: str, timeout: float = 600.0):
        """Yield the job now and after each of its transitions, until terminal or timeout."""
        store = self.rt.store
        last_id = self._stream_tail()
        job = self.get(job_id)
        yield job
        deadline = time.monotonic() + timeout
        while JobState(job["state"]) not in TERMINAL:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return
            events = store.read_events(last_id, block_ms=min(remaining_ms, 5000), count=500)
            if not events:
                continue
            last_id = events[-1][0]
            if any(fields.get("job") == job_id for _, fields in events):
                job = self.get(job_id)
                yield job

    def _stream_tail(self) -> str:
        last = self.rt.redis.xrevrange(self.rt.keys.events, count=1)
        return last[0][0] if last else "0-0"
