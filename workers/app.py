"""The Celery app: ``celery -A backbeat.workers.app worker`` / ``beat`` / ``flower``.

The app of celery_app.py, with this node's job leases, heartbeat and drain on warm shutdown
connected to Celery's signals (workers/node.py).
"""

from __future__ import annotations

from . import node
from .celery_app import app

__all__ = ["app"]

node.connect()
