"""Marshmallow schemas of the provider request bodies: the fields of each job type's params.

The schemas carry every field the providers document for ``add-instrumental`` and ``add-vocals``
(https://docs.kie.ai/suno-api/add-vocals, https://docs.sunoapi.org/suno-api/add-vocals and the
add-instrumental pages) except ``callBackUrl``, which backbeat builds and signs per job (the
client adds it, client.py). Unknown fields and wrong types are rejected with field-level
messages; text limits depend on the model (models.py) and weights go out rounded to two
decimals. ``Text`` and ``HttpUrl`` serve backbeat's own schemas too (workers/schemas.py,
api/schemas.py).
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
    validates_schema,
)

from .models import TEXT_FIELDS, limits_for

#: longest URL accepted, in characters
URL_MAX = 2048
_SURROGATE = "Not valid Unicode text (it contains a lone surrogate)."


def encodable(text: str) -> bool:
    """False for a string Redis and the provider cannot take (a lone surrogate from JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Weight(fields.Float):
    """A number in [0, 1] in steps of 0.01, returned rounded to two decimals (0.1 + 0.2 -> 0.3).

    Strings and booleans are not numbers here. Off-step values such as 0.123 are refused, not
    rounded: the providers' schemas say ``multipleOf 0.01`` and guessing would change the request.
    """

    default_error_messages = {
        "invalid": "Not a valid number.",
        "step": "Must be a multiple of 0.01 (at most two decimals).",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=validate.Range(min=0, max=1), metadata={"multipleOf": 0.01},
                         **kwargs)

    def _deserialize(self, value: Any, attr, data, **kwargs) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        number = super()._deserialize(value, attr, data, **kwargs)  # refuses nan, inf, 10**400
        if not 0 <= number <= 1:
            return number  # the Range validator names the bounds (1e308 * 100 would overflow)
        if abs(number * 100 - round(number * 100)) > 1e-9:
            raise self.make_error("step")
        return round(number, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


class Text(fields.String):
    """A string of valid Unicode; unless ``blank_ok``, not empty or whitespace only."""

    default_error_messages = {"surrogate": _SURROGATE, "blank": "Must not be blank."}

    def __init__(self, *, blank_ok: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blank_ok = blank_ok

    def _deserialize(self, value: Any, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not encodable(text):
            raise self.make_error("surrogate")
        if not self.blank_ok and not text.strip():
            raise self.make_error("blank")
        return text


class HttpUrl(fields.Url):
    """An absolute http(s) URL of valid Unicode, at most URL_MAX characters."""

    default_error_messages = {"surrogate": _SURROGATE}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(schemes={"http", "https"}, validate=validate.Length(max=URL_MAX),
                         **kwargs)

    def _deserialize(self, value: Any, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not encodable(text):
            raise self.make_error("surrogate")
        return text


def _text(blank_ok: bool = False) -> Text:
    """A required provider text field; its length limit comes from the model's row."""
    return Text(required=True, blank_ok=blank_ok, validate=validate.Length(min=1))


class _ParamsBase(Schema):
    """Fields shared by both job types; ``models`` is the configured allowed set."""

    class Meta:
        unknown = RAISE
        ordered = True

    uploadUrl = HttpUrl(required=True)
    title = _text()
    negativeTags = _text(blank_ok=True)
    model = fields.String(required=False)
    vocalGender = fields.String(required=False, validate=validate.OneOf(["m", "f"]))
    styleWeight = Weight(required=False)
    weirdnessConstraint = Weight(required=False)
    audioWeight = Weight(required=False)

    def __init__(self, *, models: tuple[str, ...] = ("V4_5PLUS", "V5"),
                 default_model: str = "V4_5PLUS", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = tuple(models)
        self.default_model = default_model
        # fields are copies per instance (marshmallow deep-copies the declared ones): still,
        # replace their lists and dicts rather than mutate them
        model = self.fields["model"]
        model.validators = [*model.validators, validate.OneOf(self.models)]
        model.metadata = {**model.metadata, "default": default_model}
        for name in TEXT_FIELDS:
            if name in self.fields:  # documented as the most any allowed model takes
                per_model = {m: limits_for(m).of(name) for m in self.models}
                self.fields[name].metadata = {
                    **self.fields[name].metadata, "maxLength": max(per_model.values()),
                    "description": "At most, per model: "
                    + ", ".join(f"{m} {n}" for m, n in per_model.items()) + " characters."}

    @pre_load
    def _refuse_callback(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and "callBackUrl" in data:
            raise ValidationError(
                ["backbeat builds and signs the callback URL itself; remove this field."],
                field_name="callBackUrl",
            )
        return data

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _check_lengths(self, data: dict[str, Any], original: Any, **_: Any) -> None:
        """Each text field within its limit for the request's model (provider/models.py)."""
        model = original.get("model") if isinstance(original, dict) else None
        if model is None:
            model = self.default_model
        elif data.get("model") != model:
            return  # an unknown model carries its own message
        limits = limits_for(model)
        errors = {name: [f"Longer than {limits.of(name)} characters, the limit for model "
                         f"{model}."]
                  for name in TEXT_FIELDS
                  if isinstance(data.get(name), str) and len(data[name]) > limits.of(name)}
        if errors:
            raise ValidationError(errors)

    @post_load
    def _default_model(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data.setdefault("model", self.default_model)
        return data


class AddInstrumentalParams(_ParamsBase):
    """``POST /api/v1/generate/add-instrumental``: a backing track around uploaded vocals."""

    tags = _text()


class AddVocalsParams(_ParamsBase):
    """``POST /api/v1/generate/add-vocals``: vocals sung over an uploaded instrumental."""

    prompt = _text()
    style = _text()


#: job type (profiles.JOB_TYPES) -> the schema of its params
PARAMS_SCHEMAS: dict[str, type[_ParamsBase]] = {
    "add-instrumental": AddInstrumentalParams,
    "add-vocals": AddVocalsParams,
}
