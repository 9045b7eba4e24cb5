"""The Celery app: ``celery -A backbeat.workers.app worker`` / ``beat`` / ``flower``.

The app of celery_app.py, with this node's job leases, heartbeat and drain on warm shutdown
connected to Celery's signals (workers/node.py), and backbeat's logging (config/logging.py):

- ``setup_logging``: with a receiver connected, Celery configures no logger of its own; the
  worker and beat call :func:`~backbeat.config.logging.configure_logging` instead, so Celery's
  lines, the tasks' and backbeat's share one root handler, one format (BACKBEAT_LOG_FORMAT),
  one level (BACKBEAT_LOG_LEVEL, which wins over ``-l``) and the secret filter. The pool
  processes inherit it.
- ``celeryd_init`` (the worker, before it says anything): the same handler at once, and
  Python warnings into it, so the warnings the worker raises before ``setup_logging`` (running
  as root: Celery's SecurityWarning) are log lines too; with ``BACKBEAT_LOG_FORMAT=json`` the
  startup banner (printed, not logged) is left out, as ``celery -q`` would: the worker's output
  is JSON lines only, but for Celery's "worker: Warm shutdown" notice on SIGTERM (printed).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from ..config.logging import configure_logging
from ..config.settings import get_settings
from . import node
from .celery_app import app

__all__ = ["app"]


def _setup_logging(**_: Any) -> None:
    configure_logging(get_settings())


def _on_worker_init(instance: Any = None, **_: Any) -> None:
    settings = get_settings()
    configure_logging(settings)
    logging.captureWarnings(True)
    if instance is not None and settings.log_format == "json":
        instance.quiet = True


signals.setup_logging.connect(_setup_logging, weak=False, dispatch_uid="bb-logging")
signals.celeryd_init.connect(_on_worker_init, weak=False, dispatch_uid="bb-worker-logging")
node.connect()
