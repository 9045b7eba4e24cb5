"""Response schemas of the HTTP API (request schemas live in workers/schemas.py)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class ErrorOut(Schema):
    code = fields.Integer(required=True)
    message = fields.String()


class TrackOut(Schema):
    id = fields.String()
    audio_url = fields.String(allow_none=True)
    stream_audio_url = fields.String(allow_none=True)
    image_url = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    tags = fields.String(allow_none=True)
    duration = fields.Float(allow_none=True)
    model_name = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)


class JobOut(Schema):
    """A job as callers see it."""

    id = fields.String(required=True)
    type = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": [
        "queued", "submitting", "submitted", "text_ready", "first_ready", "succeeded",
        "failed", "expired", "cancelled"]})
    params = fields.Dict()
    upstream_task_id = fields.String(allow_none=True)
    attempts = fields.Integer()
    tracks = fields.List(fields.Nested(TrackOut))
    error = fields.Nested(ErrorOut, allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    priority = fields.Integer()
    duplicate_task_ids = fields.List(fields.String())
    created_at = fields.String(allow_none=True)
    updated_at = fields.String(allow_none=True)
    timestamps = fields.Dict(keys=fields.String(), values=fields.String())


class CallbackAck(Schema):
    code = fields.Integer()
    msg = fields.String()
    state = fields.String()


class Health(Schema):
    status = fields.String()
    redis = fields.Boolean()


class BucketOut(Schema):
    purpose = fields.String()
    rate = fields.String()
    burst = fields.Integer()
    effective_limit = fields.Integer()
    factor = fields.Float()
    tokens = fields.Integer()
    cooldown_s = fields.Float()
    cuts = fields.Integer()
    throttles = fields.Integer()


class BreakerOut(Schema):
    state = fields.String(metadata={"enum": ["closed", "open", "half-open"]})
    open_for_s = fields.Float()
    trips = fields.Integer()


class PauseOut(Schema):
    paused = fields.Boolean()
    reason = fields.String(allow_none=True)
    automatic_probe = fields.Boolean()
    next_probe_in_s = fields.Float(allow_none=True)


class BacklogOut(Schema):
    queued = fields.Integer()
    parked = fields.Integer()
    in_broker = fields.Integer()
    in_flight = fields.Integer()
    uncertain = fields.Integer()


class LimiterOut(Schema):
    """The account's shared limiter: buckets, breaker, pause and backlog."""

    account = fields.String()
    provider = fields.String()
    breaker = fields.Nested(BreakerOut)
    pause = fields.Nested(PauseOut)
    submit = fields.Nested(BucketOut)
    poll = fields.Nested(BucketOut)
    backlog = fields.Nested(BacklogOut)


class PauseIn(Schema):
    """Why submissions are paused (shown to operators)."""

    reason = fields.String(load_default="manual", validate=validate.Length(min=1, max=100))
