"""``backbeat.submit``: take one job through the limiter to the provider."""

from __future__ import annotations

import logging

from ..workers import runtime
from ..workers.app import app
from ..workers.resilience import through_redis_outages
from ..workers.submission import submit_job

log = logging.getLogger(__name__)


@app.task(name="backbeat.submit", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def submit(job_id: str) -> str:
    """Submit ``job_id``; a job that must wait long is parked in Redis, not re-sent."""
    rt = runtime.current()
    step = through_redis_outages(lambda: submit_job(rt, job_id),
                                 budget_s=rt.settings.visibility_timeout_s / 4)
    log.info("job %s: %s", job_id, step.reason)
    return step.reason
