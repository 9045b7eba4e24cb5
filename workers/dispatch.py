"""Sending Celery messages for jobs: only the job id travels, never with a countdown."""

from __future__ import annotations

from celery import Celery

from ..config.celery import celery_config
from ..config.settings import Settings, get_settings

_apps: dict[tuple[str, str], Celery] = {}


def celery_for(settings: Settings) -> Celery:
    """The process's Celery app when ``settings`` route like the environment's (same broker,
    same key prefix), else one built for them (a client pointed at another deployment)."""
    route = (settings.broker_url, settings.key_prefix)
    env = get_settings()
    if route == (env.broker_url, env.key_prefix):
        from .app import app

        return app
    if route not in _apps:
        other = Celery("backbeat-producer")
        other.config_from_object(celery_config(settings))
        _apps[route] = other
    return _apps[route]


def send_submit(settings: Settings, job_id: str) -> None:
    """Queue one ``backbeat.submit`` message for ``job_id`` (by name: no task import needed)."""
    celery_for(settings).send_task("backbeat.submit", args=[job_id], queue="submit")
