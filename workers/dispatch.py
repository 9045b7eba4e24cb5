"""Sending Celery messages for jobs: only the job id travels, never with a countdown."""

from __future__ import annotations

from .app import app


def send_submit(job_id: str) -> None:
    """Queue one ``backbeat.submit`` message for ``job_id`` (by name: no task import needed)."""
    app.send_task("backbeat.submit", args=[job_id], queue="submit")
