"""Celery configuration: queues, routes, delivery knobs and the beat schedule, from Settings."""

from __future__ import annotations

from typing import Any

from kombu import Queue

from .redis_urls import broker_url_and_options
from .settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings mapping, one comment per key."""
    # a Sentinel URL (either spelling, config/redis_urls.py) becomes kombu's ``sentinel://``
    # form plus the ``master_name`` transport option; a plain URL is passed as it is
    broker_url, sentinel_options = broker_url_and_options(settings.broker_url)
    # the visibility timeout is longer than any hold (a submit delivery holds at most a quarter
    # of it inline, see workers/submission.py, and no countdowns are sent: long waits park in
    # Redis), so kombu redelivers only messages whose worker was lost
    transport = {
        "visibility_timeout": int(settings.visibility_timeout_s),
        "global_keyprefix": f"{settings.key_prefix}:celery:",
        **sentinel_options,
    }
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # job state lives in the job store; Celery results would only duplicate it
        "task_ignore_result": True,
        "result_backend": None,
        # only the job id travels; JSON only, never pickle
        "task_serializer": "json",
        "accept_content": ["json"],
        # at-least-once delivery: ack after the body, requeue if the worker process dies
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # declared queues only, to catch typos
        "task_queues": (Queue("submit"), Queue("reconcile")),
        "task_default_queue": "submit",
        "task_create_missing_queues": False,
        "task_routes": {
            "backbeat.submit": {"queue": "submit"},
            "backbeat.reconcile": {"queue": "reconcile"},
            "backbeat.pump": {"queue": "reconcile"},
            "backbeat.housekeep": {"queue": "reconcile"},
            "backbeat.notify": {"queue": "reconcile"},
        },
        # Flower needs events; sent events let it show a task before a worker takes it
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            name: {
                "task": f"backbeat.{name}",
                "schedule": every_s,
                # a stale tick is useless: drop it rather than pile up behind a busy worker
                "options": {"expires": max(every_s * 5, 10)},
            }
            for name, every_s in (
                ("reconcile", settings.poll_interval_s),
                ("pump", settings.poll_interval_s),
                ("notify", settings.poll_interval_s),
                ("housekeep", max(5.0, settings.poll_interval_s)),
            )
        },
        "beat_max_loop_interval": 5,
        "timezone": "UTC",
    }
