"""The Celery app object: its tasks and configuration. Producers send through it; the worker,
beat and Flower load workers/app.py, which adds the node's signal handlers."""

from __future__ import annotations

from celery import Celery

from ..config.celery import celery_config
from ..config.settings import get_settings

TASK_MODULES = ["backbeat.tasks.submit", "backbeat.tasks.reconcile", "backbeat.tasks.pump",
                "backbeat.tasks.housekeeping", "backbeat.tasks.credits"]

app = Celery("backbeat", include=TASK_MODULES)
app.config_from_object(celery_config(get_settings()))
