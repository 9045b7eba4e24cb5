"""``backbeat.submit``: take one job through the limiter to the provider."""

from __future__ import annotations

import logging

from ..workers import runtime
from ..workers.app import app
from ..workers.dispatch import send_submit
from ..workers.submission import submit_job

log = logging.getLogger(__name__)


@app.task(name="backbeat.submit", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def submit(job_id: str) -> str:
    """Submit ``job_id``; a later attempt is a new message with a short countdown."""
    step = submit_job(runtime.current(), job_id)
    if step.retry_in_s is not None:
        send_submit(job_id, countdown_s=step.retry_in_s)
    log.info("job %s: %s", job_id, step.reason)
    return step.reason
