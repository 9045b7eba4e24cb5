"""``backbeat.submit``: take one job through the limiter to the provider."""

from __future__ import annotations

import logging

from ..workers import runtime
from ..workers.app import app
from ..workers.resilience import through_redis_outages
from ..workers.submission import submit_job

log = logging.getLogger(__name__)


@app.task(name="backbeat.submit", bind=True, acks_late=True, reject_on_worker_lost=True,
          ignore_result=True)
def submit(self, job_id: str) -> str:
    """Submit ``job_id``; a job that must wait long is parked in Redis, not re-sent."""
    rt = runtime.current()
    step = None
    try:
        step = through_redis_outages(lambda: submit_job(rt, job_id),
                                     budget_s=rt.settings.visibility_timeout_s / 4)
    finally:  # this node's lease on the job ends with the delivery (workers/leases.py),
        if step is None or not step.released:  # unless the job's last move dropped it
            release_lease(rt, self.request.hostname, job_id)
    log.info("job %s: %s", job_id, step.reason)
    return step.reason


def release_lease(rt: runtime.Runtime, node: str | None, job_id: str) -> None:
    try:
        rt.leases.release(node or "", job_id)
    except Exception:  # noqa: BLE001 - an unreleased lease expires; its reclaim finds the job moved
        log.warning("job %s: lease not released", job_id, exc_info=True)
