"""Response schemas of the HTTP API (request schemas live in workers/schemas.py)."""

from __future__ import annotations

from marshmallow import Schema, fields


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


class LimiterOut(Schema):
    account = fields.String()
    submit_rate = fields.String()
    submit_burst = fields.Integer()
    poll_rate = fields.String()
    submit_grants_in_window = fields.Integer()
    queued = fields.Integer()
    in_flight = fields.Integer()
    uncertain = fields.Integer()
