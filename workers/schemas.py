"""What producers send: ``JobRequest`` (HTTP body, client and CLI alike); its ``params`` are
checked against the provider's request schema of the job type (provider/params.py). What
callers see of a job is beside the job itself, in job.py."""

from __future__ import annotations

from functools import cache
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from ..provider.params import PARAMS_SCHEMAS, HttpUrl
from ..provider.profiles import JOB_TYPES
from . import errors


class JobRequest(Schema):
    """What a producer sends to create a job (HTTP body, client and CLI alike)."""

    class Meta:
        unknown = RAISE
        ordered = True

    type = fields.String(required=True, validate=validate.OneOf(JOB_TYPES))
    params = fields.Dict(required=True, metadata={
        "description": "Provider fields of the job type, except callBackUrl."})
    idempotency_key = fields.String(
        required=False, allow_none=True,
        validate=[validate.Length(min=1, max=200), validate.Regexp(r"^[A-Za-z0-9._:\-]+$")],
    )
    priority = fields.Integer(required=False, strict=True, validate=validate.Range(0, 9),
                              load_default=0)
    notify_url = HttpUrl(required=False, allow_none=True)

    def __init__(self, *, models: tuple[str, ...] = ("V4_5PLUS", "V5"),
                 default_model: str = "V4_5PLUS", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = tuple(models)
        self.default_model = default_model

    @validates_schema(skip_on_field_errors=False)
    def _check_params(self, data: dict[str, Any], **_: Any) -> None:
        schema_cls = PARAMS_SCHEMAS.get(data.get("type", ""))
        if schema_cls is None or "params" not in data:
            return  # those fields carry their own errors
        schema = _params_schema(schema_cls, self.models, self.default_model)
        try:
            data["params"] = schema.load(data["params"])
        except ValidationError as err:
            raise ValidationError(err.messages, field_name="params") from None


def load_job_request(data: Any, models: tuple[str, ...], default_model: str) -> dict[str, Any]:
    """Validate one producer request; raises backbeat's ValidationError with field messages."""
    if not isinstance(data, dict):
        raise errors.ValidationError({"_schema": ["Invalid input type: expected a JSON object."]})
    try:
        return _job_request(tuple(models), default_model).load(data)
    except ValidationError as err:
        raise errors.ValidationError(err.messages) from None


# A schema is built once per configuration and reused (marshmallow 4's load keeps no state on
# the instance; building one deep-copies its declared fields: about half of a request's check)


@cache
def _job_request(models: tuple[str, ...], default_model: str) -> JobRequest:
    return JobRequest(models=models, default_model=default_model)


@cache
def _params_schema(schema_cls: type[Schema], models: tuple[str, ...],
                   default_model: str) -> Schema:
    return schema_cls(models=models, default_model=default_model)
