"""Response schemas of the HTTP API (request schemas live in workers/schemas.py, the job's
public fields in its PUBLIC_JOB, the provider's params in provider/params.py)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..provider.params import PARAMS_SCHEMAS, Text
from ..provider.profiles import JOB_TYPES
from ..workers.job import PUBLIC_JOB, STATES, shape_schema
from ..workers.schemas import JobRequest

#: job type -> the OpenAPI component of its request body (AddVocalsParams -> AddVocalsJob)
JOB_COMPONENTS = {job_type: PARAMS_SCHEMAS[job_type].__name__.removesuffix("Params") + "Job"
                  for job_type in JOB_TYPES}


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


class ErrorOut(Schema):
    """Every 4xx/5xx body: a message, and field messages for validation errors."""

    code = fields.Integer(required=True)
    status = fields.String()
    message = fields.String()
    errors = fields.Dict()


class HistoryOut(Schema):
    t = fields.Integer(metadata={"description": "ms since the epoch (Redis clock)"})
    to = fields.String()
    reason = fields.String()

    class Meta:
        include = {"from": fields.String()}


#: a job as the API shows it: PUBLIC_JOB's fields, and its history when asked for
class QueueOut(Schema):
    """Where a job waiting in its producer's lane stands (workers/lanes.py)."""

    lane = fields.String(metadata={"description": "the producer whose lane holds it"})
    position = fields.Integer(metadata={"description": "jobs of its lane ahead of it"})
    ahead = fields.Integer(metadata={
        "description": "jobs the pump takes before it: every lane's, by their weights, and "
                       "those already dispatched"})
    rate_per_s = fields.Float(metadata={"description": "the fleet's effective rate now"})
    predicted_submit_at = fields.String(allow_none=True, metadata={
        "description": "ahead / rate from now (null while every account is gated)"})


JobOut = shape_schema("JobOut", PUBLIC_JOB, history=fields.List(fields.Nested(HistoryOut)),
                      queue=fields.Nested(QueueOut, allow_none=True))


class JobPage(Schema):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next."""

    items = fields.List(fields.Nested(JobOut))
    next_cursor = fields.String(allow_none=True)


class ListArgs(Schema):
    """Filters and paging of ``GET /v1/jobs``."""

    state = fields.String(validate=validate.OneOf(STATES))
    type = fields.String(validate=validate.OneOf(JOB_TYPES))
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
    window_calls = fields.Integer(metadata={
        "description": "calls the window ending now holds (answered or in flight)"})
    in_flight = fields.Integer(metadata={"description": "granted calls not answered yet"})
    cooldown_s = fields.Float()
    cuts = fields.Integer()
    throttles = fields.Integer()
    calls = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "answers counted by outcome (backbeat_provider_calls_total)"})


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
    in_lanes = fields.Integer(metadata={"description": "jobs waiting in producers' lanes"})


class CreditsOut(Schema):
    balance = fields.Raw(allow_none=True, metadata={
        "type": "number",
        "description": "the last balance read (BACKBEAT_CREDITS_INTERVAL), null before one"})
    read_s_ago = fields.Float(allow_none=True)
    cost = fields.Float(allow_none=True, metadata={
        "description": "credits one accepted submission costs (learned or configured)"})
    floor = fields.Float(metadata={"description": "the account's credit floor"})
    room = fields.Integer(allow_none=True, metadata={
        "description": "submissions the last balance still pays for above the floor; 0: "
                       "stopped until a read shows more; null while unknown"})


class AccountFigures(Schema):
    """One provider account's limiter: buckets, breaker, pause, credits."""

    account = fields.String(metadata={"description": "its id: provider and a hash of the key"})
    provider = fields.String()
    breaker = fields.Nested(BreakerOut)
    pause = fields.Nested(PauseOut)
    credits = fields.Nested(CreditsOut)
    submit = fields.Nested(BucketOut)
    poll = fields.Nested(BucketOut)


class AccountOut(AccountFigures):
    """One configured account (BACKBEAT_ACCOUNTS) and its limiter."""

    name = fields.String(metadata={"description": "as configured (BACKBEAT_ACCOUNTS)"})
    weight = fields.Float()
    credit_floor = fields.Float()


class LimiterOut(AccountFigures):
    """Every account's limiter (``accounts``; the first's also at the top level) and the
    backlog."""

    accounts = fields.List(fields.Nested(AccountOut))
    backlog = fields.Nested(BacklogOut)


class PauseIn(Schema):
    """Why submissions are paused (shown to operators), and through which account (every
    account when omitted)."""

    reason = Text(load_default="manual", validate=validate.Length(min=1, max=100))
    account = Text(load_default=None, validate=validate.Length(min=1, max=63), metadata={
        "description": "an account's name (BACKBEAT_ACCOUNTS); all accounts when omitted"})


class ResumeIn(Schema):
    """Which account to resume (every account when omitted)."""

    account = Text(load_default=None, validate=validate.Length(min=1, max=63))
