"""Producer-facing operations shared by the HTTP API, the Python client and the CLI."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow

from ..config.producers import DEFAULT
from . import lanes
from .dispatch import message_for_create, send_submit
from .errors import InvalidTransition, JobNotFound, QuotaExceeded, ValidationError
from .job import iso_ms
from .runtime import Runtime
from .schemas import load_job_request
from .states import JobState
from .store import Job
from .webhooks import check_notify_url


def enqueue(rt: Runtime, request: dict[str, Any], producer: str = DEFAULT
            ) -> tuple[Job, bool]:
    """Validate, count against the producer's quota, store (record + idempotency key) and
    place the job in one step: its message written with it, or admitted to its producer's
    lane (create_job.lua, when the broker is this Redis); else store it with an outbox entry,
    then send the message or admit the job.

    Returns (job, created). A job placed apart sits in the outbox until its message is sent
    or it is in its lane, so a crash between the two is repaired by housekeeping. A replay of
    the same idempotency key returns the first job (and counts nothing against the quota); if
    that job is still ``queued`` and in no lane its message is sent again (harmless: a submit
    claims a job only from ``queued``). Raises ValidationError (backbeat's, field messages),
    QuotaExceeded, BudgetExceeded or IdempotencyConflict.
    """
    s = rt.settings
    data = load_job_request(request, s.models, s.default_model)
    if data.get("notify_url"):
        try:
            check_notify_url(data["notify_url"], allow_private=s.webhook_allow_private)
        except marshmallow.ValidationError as err:
            raise ValidationError(err.messages) from None
    job_id = uuid.uuid4().hex
    key = data.get("idempotency_key")
    spec = s.producer(producer)
    # a replay costs nothing against a quota or budget: looked for only when there is one
    counted = spec.quota is not None or spec.credit_budget is not None
    replay = counted and bool(key) and bool(rt.redis.exists(rt.keys.idem(key)))
    wait_s = 0.0 if replay else lanes.check_quota(rt, producer, job_id)
    if wait_s > 0:
        raise QuotaExceeded(producer, str(spec.quota), wait_s)
    reserved = 0.0
    try:
        reserved = 0.0 if replay else lanes.reserve_budget(rt, producer)
        # the broker in this Redis: the new job is placed (lane or send) in the same step
        target = lanes.target(rt) if rt.broker_redis is rt.redis else None
        # ... and sent in that step when its message can be written as Redis commands
        message = message_for_create(s, job_id) if target is not None else None
        if message is not None and message.queue_key != rt.keys.submit_queue:
            message = None
        job, created, placed = rt.store.create_placed(
            job_id,
            data["type"],
            data["params"],
            idempotency_key=data.get("idempotency_key"),
            priority=data.get("priority", 0),
            notify_url=data.get("notify_url"),
            deadline_ms=int(s.deadline_s(data["type"]) * 1000),
            producer=producer,
            credits_reserved=reserved,
            target=target,
            message=message,
        )
    except BaseException:
        lanes.give_back_quota(rt, producer, job_id)
        lanes.give_back_budget(rt, producer, reserved)
        raise
    if not created:
        lanes.give_back_quota(rt, producer, job_id)
        lanes.give_back_budget(rt, producer, reserved)
    if created and placed == "send":
        lanes.send_new(rt, job.id)
    elif created and not placed:
        lanes.send_or_admit(rt, job.id, producer, job.int("priority"))
    elif (not created and job.state is JobState.QUEUED
          and not rt.redis.hexists(rt.keys.lane_of, job.id)):
        send_submit(s, job.id)
        rt.store.dispatched(job.id)
    return job, created


def get(rt: Runtime, job_id: str) -> Job:
    job = rt.store.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def queue_position(rt: Runtime, job: Job) -> dict[str, Any] | None:
    """Where a queued job waiting in its producer's lane stands, with its predicted
    submission time (ISO 8601, UTC); None for any other job."""
    if job.state is not JobState.QUEUED:
        return None
    where = lanes.position(rt, job.id, job.get("producer") or None)
    if where is None:
        return None
    at_ms = where.pop("predicted_submit_ms")
    return {**where, "predicted_submit_at": None if at_ms is None else iso_ms(at_ms)}


def cancel(rt: Runtime, job_id: str) -> Job:
    """Cancel a job that has not been sent to the provider yet."""
    job = get(rt, job_id)
    result = rt.store.transition(job_id, JobState.CANCELLED, "cancelled by caller",
                                 require_from=JobState.QUEUED)
    if not result.applied:
        raise InvalidTransition(job_id, (result.before or job.state).value, "cancelled")
    lanes.remove(rt, job_id)
    lanes.give_back_budget(rt, job.get("producer") or DEFAULT,
                           float(job.get("credits_reserved") or 0))
    return get(rt, job_id)


def retry(rt: Runtime, job_id: str) -> Job:
    """Send a ``failed`` or ``expired`` job round again (a fresh retry budget, same record);
    it is requeued and parked in one step, so the pump sends it."""
    job = get(rt, job_id)
    previous = job.previous_task_ids + ([job.upstream_task_id] if job.upstream_task_id else [])
    result = rt.store.transition(
        job_id, JobState.QUEUED, "retried by caller", retry=True, park_delay_ms=0,
        fields={"failures": 0, "+retries": 1, "-error_code": "", "-error_message": "",
                "-uncertain": "", "-upstream_task_id": "", "-tracks": "", "-callbacks": "",
                "previous_task_ids": ",".join(previous)},
    )
    if not result.applied:
        raise InvalidTransition(job_id, (result.before or job.state).value, "queued (retry)")
    return get(rt, job_id)
