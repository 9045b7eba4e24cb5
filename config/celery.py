"""Celery configuration: queues, routes, delivery knobs and the beat schedule, from Settings."""

from __future__ import annotations

from typing import Any

from kombu import Queue

from .redis_urls import broker_url_and_options
from .settings import Settings

#: every queue, in the order the all-queue ``worker`` line lists them (Flower shows these names):
#: ``submit`` provider create calls (limited, held while waiting for a token); ``reconcile``
#: record-info polls (limited; a cycle may run for a minute) and the credit balance read (a
#: provider call through the poll bucket, so not on ``housekeeping``); ``housekeeping`` the
#: pump and housekeeping (Redis only, short: the pump refills ``submit`` and must never wait
#: behind a slow call); ``notify`` caller webhooks (a cycle delivers for up to a minute, one
#: delivery to a receiver that never answers takes up to 40 s). The Procfile's ``worker`` line
#: consumes them all; its ``worker-<queue>`` pools one each.
QUEUES: tuple[str, ...] = ("submit", "reconcile", "housekeeping", "notify")

#: the queue of every task; beat's ticks follow these routes too
ROUTES: dict[str, str] = {
    "backbeat.submit": "submit",
    "backbeat.reconcile": "reconcile",
    "backbeat.credits": "reconcile",
    "backbeat.pump": "housekeeping",
    "backbeat.housekeep": "housekeeping",
    "backbeat.notify": "notify",
}


def broker_prefix(key_prefix: str) -> str:
    """What kombu puts before every broker key (``global_keyprefix``): Celery's keys live
    beside backbeat's under the same prefix (workers/keys.py reads them as data)."""
    return f"{key_prefix}:celery:"


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
        "global_keyprefix": broker_prefix(settings.key_prefix),
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
        # declared queues only, to catch typos; one queue per kind of work (QUEUES), so a
        # pool consuming one of them (the Procfile's worker-* lines) never waits behind another
        "task_queues": tuple(Queue(name) for name in QUEUES),
        "task_default_queue": "submit",
        "task_create_missing_queues": False,
        "task_routes": {task: {"queue": queue} for task, queue in ROUTES.items()},
        # Flower needs events; sent events let it show a task before a worker takes it
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            name: {
                "task": f"backbeat.{name}",
                "schedule": every_s,
                # a stale tick is useless: drop it rather than pile up behind a busy worker
                # (a credits tick by the time the next one is sent)
                "options": {"expires": every_s if name == "credits" else max(every_s * 5, 10)},
            }
            for name, every_s in (
                ("reconcile", settings.poll_interval_s),
                ("pump", settings.poll_interval_s),
                ("notify", settings.poll_interval_s),
                ("housekeep", max(5.0, settings.poll_interval_s)),
                # the credit balance (tasks/credits.py); BACKBEAT_CREDITS_INTERVAL=0: no tick
                ("credits", settings.credits_interval_s),
            )
            if every_s > 0 or name != "credits"
        },
        "beat_max_loop_interval": 5,
        "timezone": "UTC",
    }
