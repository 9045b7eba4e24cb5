"""The provider call every peer app makes: one sunoapi-style create, as a user would write it.

``POST {PEER_BASE_URL}/api/v1/generate/add-instrumental`` with ``Authorization: Bearer
{PEER_API_KEY}``. sunoapi answers HTTP 200 with the outcome in the body's ``code``: 200 with
``data.taskId`` (accepted, paid), 430 ("Your call frequency is too high", also 405: rate
limit exceeded) when throttled; 429 there means *insufficient credits*, not throttling.

Bench instrumentation, not part of the pattern: while the request is in flight the job's title
maps to this process id in the hash ``peer:inflight`` of ``PEER_BROKER_URL`` (so the benchmark
can SIGKILL the process that is mid-call). One session per process (created after the fork).
"""

from __future__ import annotations

import os
from typing import Any

import requests
from redis import Redis

THROTTLE_CODES = frozenset({430, 405})
PATH = "/api/v1/generate/add-instrumental"
INFLIGHT = "peer:inflight"

_per_process: dict[int, tuple[requests.Session, Redis]] = {}


def celery_app(name: str) -> Any:
    """The Celery app of a Celery peer: the at-least-once settings a user sets for paid calls
    (late ack, a killed process's message redelivered, prefetch 1), JSON, queue ``peer``."""
    from celery import Celery

    app = Celery(name, broker=os.environ["PEER_BROKER_URL"])
    app.conf.update(
        task_default_queue="peer",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


class Throttled(Exception):
    """The provider refused the call as over its rate (nothing was created or charged)."""


class Failed(Exception):
    """Any other refusal or server error (``code`` in the body, else the HTTP status)."""


def _session() -> tuple[requests.Session, Redis]:
    pid = os.getpid()
    if pid not in _per_process:
        _per_process[pid] = (requests.Session(),
                             Redis.from_url(os.environ["PEER_BROKER_URL"]))
    return _per_process[pid]


def params(title: str) -> dict[str, Any]:
    return {"uploadUrl": "https://example.com/v.mp3", "title": title, "tags": "rock",
            "negativeTags": "metal",
            # callbacks are off in the simulator for the peers; a loopback address anyway
            "callBackUrl": "http://127.0.0.1:9/callback"}


def create(title: str) -> str:
    """One create call; the upstream task id, or Throttled / Failed."""
    session, redis = _session()
    redis.hset(INFLIGHT, title, os.getpid())
    try:
        resp = session.post(os.environ["PEER_BASE_URL"] + PATH, json=params(title),
                            headers={"Authorization": f"Bearer {os.environ['PEER_API_KEY']}"},
                            timeout=(5, 30))
    finally:
        redis.hdel(INFLIGHT, title)
    try:
        body = resp.json()
    except ValueError:
        raise Failed(f"HTTP {resp.status_code}, not JSON") from None
    code = body.get("code", resp.status_code) if isinstance(body, dict) else resp.status_code
    if code == 200 and (body.get("data") or {}).get("taskId"):
        return body["data"]["taskId"]
    if code in THROTTLE_CODES:
        raise Throttled(f"{code}: {body.get('msg')}")
    raise Failed(f"{code}: {body.get('msg') if isinstance(body, dict) else body}")
