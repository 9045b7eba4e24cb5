"""Marshmallow schemas for producer requests: the provider fields of each job type.

The schemas carry every field the providers document for ``add-instrumental`` and ``add-vocals``
(upstream-api.md section 1) except ``callBackUrl``, which backbeat builds and signs per job.
Unknown fields and wrong types are rejected with field-level messages.
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

#: documented limits (sunoapi.org add-*: title 100; prompt/style bounds from the generate pages)
TITLE_MAX = 100
PROMPT_MAX = 5000
STYLE_MAX = 1000
TAGS_MAX = 1000
URL_MAX = 2048
JOB_TYPES = ("add-instrumental", "add-vocals")


class Weight(fields.Float):
    """A number in [0, 1] in steps of 0.01; strings and booleans are not numbers here."""

    default_error_messages = {
        "invalid": "Not a valid number.",
        "step": "Must be a multiple of 0.01 (at most two decimals).",
    }

    def _deserialize(self, value: Any, attr, data, **kwargs) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        number = super()._deserialize(value, attr, data, **kwargs)
        if abs(number * 100 - round(number * 100)) > 1e-9:
            raise self.make_error("step")
        return number


def _text(max_len: int, required: bool = True) -> fields.String:
    return fields.String(
        required=required,
        validate=validate.Length(min=1 if required else 0, max=max_len),
    )


def _url() -> fields.Url:
    return fields.Url(required=True, schemes={"http", "https"},
                      validate=validate.Length(max=URL_MAX))


class _ParamsBase(Schema):
    """Fields shared by both job types; ``models`` is the configured allowed set."""

    class Meta:
        unknown = RAISE
        ordered = True

    uploadUrl = _url()
    title = _text(TITLE_MAX)
    negativeTags = _text(TAGS_MAX)
    model = fields.String(required=False)
    vocalGender = fields.String(required=False, validate=validate.OneOf(["m", "f"]))
    styleWeight = Weight(required=False, validate=validate.Range(min=0, max=1))
    weirdnessConstraint = Weight(required=False, validate=validate.Range(min=0, max=1))
    audioWeight = Weight(required=False, validate=validate.Range(min=0, max=1))

    def __init__(self, *, models: tuple[str, ...] = ("V4_5PLUS", "V5"),
                 default_model: str = "V4_5PLUS", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = tuple(models)
        self.default_model = default_model

    @pre_load
    def _refuse_callback(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and "callBackUrl" in data:
            raise ValidationError(
                ["backbeat builds and signs the callback URL itself; remove this field."],
                field_name="callBackUrl",
            )
        return data

    @validates("model")
    def _check_model(self, value: str, **_: Any) -> None:
        if value not in self.models:
            raise ValidationError(f"Must be one of: {', '.join(self.models)}.")

    @post_load
    def _default_model(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data.setdefault("model", self.default_model)
        return data


class AddInstrumentalParams(_ParamsBase):
    """``POST /api/v1/generate/add-instrumental``: a backing track around uploaded vocals."""

    tags = _text(TAGS_MAX)


class AddVocalsParams(_ParamsBase):
    """``POST /api/v1/generate/add-vocals``: vocals sung over an uploaded instrumental."""

    prompt = _text(PROMPT_MAX)
    style = _text(STYLE_MAX)


PARAMS_SCHEMAS: dict[str, type[_ParamsBase]] = {
    "add-instrumental": AddInstrumentalParams,
    "add-vocals": AddVocalsParams,
}


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
    notify_url = fields.Url(required=False, allow_none=True, schemes={"http", "https"},
                            validate=validate.Length(max=URL_MAX))

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
        schema = schema_cls(models=self.models, default_model=self.default_model)
        try:
            data["params"] = schema.load(data["params"])
        except ValidationError as err:
            raise ValidationError(err.messages, field_name="params") from None


def load_job_request(data: Any, models: tuple[str, ...], default_model: str) -> dict[str, Any]:
    """Validate one producer request; raises marshmallow.ValidationError with field messages."""
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Invalid input type: expected a JSON object."]})
    return JobRequest(models=models, default_model=default_model).load(data)
