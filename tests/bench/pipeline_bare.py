"""The bare arm of bench_pipeline: a Celery app whose one task only POSTs a job's create request
to the provider simulator and stores the answer's task id in Redis.

Run as a worker exactly as the Procfile runs backbeat's (``celery -A pipeline_bare worker
--prefetch-multiplier 1 --concurrency N -l INFO --without-mingle --without-gossip``, with
tests/bench on PYTHONPATH); the bench sends with ``post.delay(...)``. The Celery settings that
matter are backbeat's (config/celery.py): JSON, late ack, reject on worker lost, prefetch 1,
results ignored, task events and sent events on. Environment: PIPELINE_BROKER_URL (its own
Redis db), PIPELINE_SIM_URL, PIPELINE_API_KEY, PIPELINE_KEY_PREFIX (where answers go).

``web``: the HTTP front a user of plain Celery would put before it for producers in other
services, run by gunicorn with the Procfile's web flags: ``POST /jobs`` with
``{"params": {...}, "callback_url": "..."}`` answers 202 ``{"id": ...}`` after ``post.delay``
(a body that is not such an object: 400). It validates nothing more (backbeat's web checks
every field and the producer's token): the bare peer is given the cheaper front.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import requests
from celery import Celery, signals
from flask import Flask, jsonify, request
from redis import Redis

QUEUE = "bare"
#: the create path of the sunoapi profile (the job type the bench enqueues)
CREATE_PATH = "/api/v1/generate/add-instrumental"

app = Celery("pipeline_bare")
app.conf.update(
    broker_url=os.environ.get("PIPELINE_BROKER_URL", "redis://127.0.0.1:6379/1"),
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    result_backend=None,
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    worker_send_task_events=True,
    task_send_sent_event=True,
    worker_hijack_root_logger=False,
)

_state: dict[str, Any] = {}


@signals.worker_process_init.connect
def _per_process(**_: Any) -> None:
    _state.clear()  # after the fork: own session, own Redis connection


def _session() -> requests.Session:
    if "session" not in _state:
        _state["session"] = requests.Session()
        _state["redis"] = Redis.from_url(os.environ.get("PIPELINE_STATE_URL",
                                                        "redis://127.0.0.1:6379/0"))
    return _state["session"]


@app.task(name="pipeline.post", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def post(job_id: str, params: dict[str, Any], callback_url: str) -> str:
    """POST the request backbeat's worker sends (same path, headers and body), then store the
    answer's task id under the job's key, as backbeat records ``upstream_task_id``."""
    session = _session()
    resp = session.post(os.environ["PIPELINE_SIM_URL"] + CREATE_PATH,
                        json={**params, "callBackUrl": callback_url},
                        headers={"Authorization": f"Bearer {os.environ['PIPELINE_API_KEY']}",
                                 "Accept": "application/json"},
                        timeout=(5, 30))
    task_id = ((resp.json() or {}).get("data") or {}).get("taskId") or ""
    prefix = os.environ.get("PIPELINE_KEY_PREFIX", "bare")
    pipe = _state["redis"].pipeline(transaction=False)  # one round trip, as one script call
    pipe.hset(f"{prefix}:job:{job_id}", mapping={"state": "submitted", "task_id": task_id})
    pipe.incr(f"{prefix}:done")
    pipe.execute()
    return task_id


web = Flask("pipeline_bare")


@web.post("/jobs")
def create() -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        return jsonify(error="a JSON object with params (an object) is required"), 400
    job_id = uuid.uuid4().hex
    post.delay(job_id, data["params"], str(data.get("callback_url") or ""))
    return jsonify(id=job_id), 202
