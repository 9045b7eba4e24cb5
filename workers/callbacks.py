"""Provider stage callbacks: validate, adopt the upstream task id, apply the transition."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from . import upstream
from .reconcile import next_poll_delay_ms
from .runtime import Runtime
from .states import JobState

log = logging.getLogger(__name__)


class CallbackItem(Schema):
    """One track in a callback (snake_case, except ``createTime``)."""

    class Meta:
        unknown = INCLUDE

    id = fields.String()
    audio_url = fields.String(allow_none=True)
    stream_audio_url = fields.String(allow_none=True)
    image_url = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    tags = fields.String(allow_none=True)
    duration = fields.Float(allow_none=True)


class CallbackData(Schema):
    """The ``data`` object of a callback."""

    class Meta:
        unknown = INCLUDE

    callbackType = fields.String(
        required=True, validate=validate.OneOf(["text", "first", "complete", "error"]))
    task_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    data = fields.List(fields.Nested(CallbackItem), allow_none=True, load_default=None)


class CallbackBody(Schema):
    """A provider stage callback: ``{code, msg, data: {callbackType, task_id, data: [...]}}``."""

    class Meta:
        unknown = INCLUDE

    code = fields.Integer(required=True, strict=True)
    msg = fields.String(load_default="", allow_none=True)
    data = fields.Nested(CallbackData, required=True)


@dataclass(frozen=True)
class CallbackResult:
    """What a callback changed: ``applied`` false for repeats, late or out-of-order stages."""

    applied: bool
    state: str
    adopted: bool = False


def apply_callback(rt: Runtime, job_id: str, payload: Any) -> CallbackResult:
    """Validate and apply one callback for a job whose signature was already checked.
    Raises marshmallow.ValidationError for a malformed body and LookupError for no such job."""
    body = CallbackBody().load(payload if isinstance(payload, dict) else {})
    store = rt.store
    job = store.get(job_id)
    if job is None:
        raise LookupError(job_id)
    task_id, update = upstream.from_callback(body)
    adopted = False
    if task_id and task_id in job.previous_task_ids:
        # a late callback of the task an earlier round made (the job was retried since): it
        # says nothing about this round, and must not be adopted as this round's task
        log.info("job %s: callback of earlier task %s ignored", job_id, task_id)
        return CallbackResult(False, job.state.value)
    if job.state is JobState.SUBMITTING and task_id:
        # an uncertain (or still in-flight) submission: the callback names its upstream task
        moved = store.transition(job_id, JobState.SUBMITTED, "adopted from callback",
                                 fields={"upstream_task_id": task_id, "adopted": "1"},
                                 poll_delay_ms=int(rt.settings.poll_min_delay_s * 1000))
        adopted = moved.applied
    elif task_id and job.upstream_task_id and task_id != job.upstream_task_id:
        if store.add_duplicate(job_id, task_id):
            log.warning("job %s: second upstream task %s recorded as duplicate", job_id, task_id)
        return CallbackResult(False, job.state.value)
    store.annotate(job_id, {"callbacks": "1", "+callbacks_received": 1})
    age_ms = store.now_ms() - job.int("created_at")
    result = store.transition(job_id, update.state, update.reason, fields=update.fields,
                              poll_delay_ms=next_poll_delay_ms(rt, age_ms, callbacks_seen=True))
    now = store.get(job_id)
    return CallbackResult(result.applied, now.state.value if now else "", adopted)


__all__ = ["CallbackResult", "ValidationError", "apply_callback"]
