"""Response schemas of the HTTP API (request schemas live in workers/schemas.py)."""

from __future__ import annotations

from marshmallow import Schema, fields, post_dump, validate

from ..workers.schemas import PARAMS_SCHEMAS, JobRequest, Text

#: job type -> the OpenAPI component of its request body
JOB_COMPONENTS = {"add-instrumental": "AddInstrumentalJob", "add-vocals": "AddVocalsJob"}


def job_request_components(models: tuple[str, ...], default_model: str) -> dict[str, Schema]:
    """Per job type, the request schema with its ``params`` spelled out (for the OpenAPI doc).

    ``model`` lists the configured models; each text field's maxLength is the largest any of
    them allows (the per-model figures are in its description).
    """
    out = {}
    for job_type, name in JOB_COMPONENTS.items():
        params = PARAMS_SCHEMAS[job_type](models=models, default_model=default_model)
        cls = type(name, (JobRequest,), {
            "__doc__": f"Create an ``{job_type}`` job.",
            "type": fields.String(required=True, validate=validate.OneOf([job_type])),
            "params": fields.Nested(params, required=True, metadata={
                "description": "Provider fields of the job type, except callBackUrl."}),
        })
        out[name] = cls(models=models, default_model=default_model)
    return out


class JobError(Schema):
    code = fields.Raw(allow_none=True, metadata={"description": "provider or backbeat code"})
    message = fields.String()


class ErrorOut(Schema):
    """Every 4xx/5xx body: a message, and field messages for validation errors."""

    code = fields.Integer(required=True)
    status = fields.String()
    message = fields.String()
    errors = fields.Dict()


class TrackOut(Schema):
    """One generated track: every field the provider returned (snake_case, provider/tracks.py),
    the best known ones declared here, the rest passed through; ``expires_at`` is when the
    provider deletes its files (the profile's retention)."""

    id = fields.String()
    audio_url = fields.String(allow_none=True)
    stream_audio_url = fields.String(allow_none=True)
    image_url = fields.String(allow_none=True)
    source_audio_url = fields.String(allow_none=True)
    source_stream_audio_url = fields.String(allow_none=True)
    source_image_url = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    tags = fields.String(allow_none=True)
    prompt = fields.String(allow_none=True)
    duration = fields.Float(allow_none=True)
    model_name = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    expires_at = fields.String(allow_none=True)

    @post_dump(pass_original=True)
    def keep_the_rest(self, data: dict, original: dict, **_: object) -> dict:
        """Fields a provider added that are not declared above pass through as they are."""
        return {**{k: v for k, v in original.items() if k not in data}, **data}


STATES = ["queued", "submitting", "submitted", "text_ready", "first_ready", "succeeded",
          "failed", "expired", "cancelled"]


class NotifyOut(Schema):
    url = fields.String()
    state = fields.String(metadata={"enum": ["waiting", "pending", "retrying", "delivered",
                                             "failed"]})
    attempts = fields.Integer()
    error = fields.String(allow_none=True)


class HistoryOut(Schema):
    t = fields.Integer(metadata={"description": "ms since the epoch (Redis clock)"})
    to = fields.String()
    reason = fields.String()

    class Meta:
        include = {"from": fields.String()}


class JobOut(Schema):
    """A job as callers see it."""

    id = fields.String(required=True)
    type = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": STATES})
    params = fields.Dict()
    upstream_task_id = fields.String(allow_none=True)
    attempts = fields.Integer()
    tracks = fields.List(fields.Nested(TrackOut))
    error = fields.Nested(JobError, allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    priority = fields.Integer()
    duplicate_task_ids = fields.List(fields.String())
    retries = fields.Integer()
    notify = fields.Nested(NotifyOut, allow_none=True)
    deadline_at = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    updated_at = fields.String(allow_none=True)
    timestamps = fields.Dict(keys=fields.String(), values=fields.String())
    history = fields.List(fields.Nested(HistoryOut))


class JobPage(Schema):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next."""

    items = fields.List(fields.Nested(JobOut))
    next_cursor = fields.String(allow_none=True)


class ListArgs(Schema):
    """Filters and paging of ``GET /v1/jobs``."""

    state = fields.String(validate=validate.OneOf(STATES))
    type = fields.String(validate=validate.OneOf(["add-instrumental", "add-vocals"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(max=300))
    history = fields.Boolean(load_default=False)


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
    in_flight = fields.Integer(metadata={"description": "granted calls not answered yet"})
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

    reason = Text(load_default="manual", validate=validate.Length(min=1, max=100))
