"""The Celery app: ``celery -A backbeat.workers.app worker`` / ``beat``."""

from __future__ import annotations

from celery import Celery

from ..config.celery import celery_config
from ..config.settings import get_settings
from . import node

TASK_MODULES = ["backbeat.tasks.submit", "backbeat.tasks.reconcile", "backbeat.tasks.pump",
                "backbeat.tasks.housekeeping"]

app = Celery("backbeat", include=TASK_MODULES)
app.config_from_object(celery_config(get_settings()))
node.connect()  # job leases, the heartbeat and the drain on warm shutdown (workers/node.py)
