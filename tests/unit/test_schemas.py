"""Request schemas: every documented field, field-level errors, callBackUrl refused."""

import json

import marshmallow
import pytest

from backbeat.workers.errors import ValidationError
from backbeat.workers.schemas import load_job_request

MODELS = ("V4_5PLUS", "V5")


def load(data, models=MODELS):
    return load_job_request(data, models, "V4_5PLUS")


def instrumental(**extra):
    return {"uploadUrl": "https://example.com/v.mp3", "title": "T", "tags": "rock",
            "negativeTags": "metal", **extra}


def vocals(**extra):
    return {"uploadUrl": "https://example.com/b.mp3", "title": "T", "prompt": "la la",
            "style": "Jazz", "negativeTags": "metal", **extra}


def errors(data, models=MODELS):
    with pytest.raises(ValidationError) as info:
        load(data, models)
    assert type(info.value) is ValidationError  # backbeat's own, never marshmallow's
    return info.value.messages


def test_valid_requests_load_with_default_model():
    out = load({"type": "add-instrumental", "params": instrumental(
        vocalGender="m", styleWeight=0.61, weirdnessConstraint=0, audioWeight=1)})
    assert out["params"]["model"] == "V4_5PLUS" and out["priority"] == 0
    out = load({"type": "add-vocals", "params": vocals(model="V5")})
    assert out["params"]["model"] == "V5"


@pytest.mark.parametrize("missing", ["uploadUrl", "title", "tags", "negativeTags"])
def test_instrumental_required_fields(missing):
    params = instrumental()
    del params[missing]
    assert "Missing data" in errors({"type": "add-instrumental", "params": params})[
        "params"][missing][0]


@pytest.mark.parametrize("missing", ["uploadUrl", "title", "prompt", "style", "negativeTags"])
def test_vocals_required_fields(missing):
    params = vocals()
    del params[missing]
    assert missing in errors({"type": "add-vocals", "params": params})["params"]


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("styleWeight", 0.123, "multiple of 0.01"),
    ("audioWeight", 1.01, "greater than or equal"),
    ("weirdnessConstraint", -0.01, "greater than or equal"),
    ("styleWeight", "0.5", "Not a valid number"),
    ("styleWeight", True, "Not a valid number"),
    ("vocalGender", "x", "Must be one of"),
    ("model", "V9", "Must be one of"),
    ("uploadUrl", "not a url", "Not a valid URL"),
    ("uploadUrl", "ftp://example.com/a.mp3", "Not a valid URL"),
    ("title", "x" * 81, "Longer than 80 characters, the limit for model V4_5PLUS."),
    ("title", "   ", "Must not be blank"),
    ("title", "a\ud800", "lone surrogate"),
    ("uploadUrl", "https://example.com/\udfff.mp3", "lone surrogate"),
    ("title", 12, "Not a valid string"),
    ("negativeTags", None, "Field may not be null"),
    ("surprise", 1, "Unknown field"),
    ("callBackUrl", "https://evil.example.com", "builds and signs the callback URL"),
])
def test_field_level_errors(field, value, needle):
    msgs = errors({"type": "add-instrumental", "params": instrumental(**{field: value})})
    assert needle in " ".join(msgs["params"][field])


@pytest.mark.parametrize("weight", [0, 0.01, 0.07, 0.29, 0.57, 0.99, 1])
def test_two_decimal_weights_pass(weight):
    assert load({"type": "add-vocals", "params": vocals(styleWeight=weight)})


def test_allowed_models_are_configurable():
    msgs = errors({"type": "add-vocals", "params": vocals(model="V5")}, models=("V4_5PLUS",))
    assert "V4_5PLUS" in msgs["params"]["model"][0]
    assert load({"type": "add-vocals", "params": vocals(model="V5_5")},
                models=("V4_5PLUS", "V5_5"))


@pytest.mark.parametrize(("data", "field"), [
    ({"type": "add-drums", "params": {}}, "type"),
    ({"params": vocals()}, "type"),
    ({"type": "add-vocals"}, "params"),
    ({"type": "add-vocals", "params": []}, "params"),
    ({"type": "add-vocals", "params": vocals(), "priority": 11}, "priority"),
    ({"type": "add-vocals", "params": vocals(), "priority": "1"}, "priority"),
    ({"type": "add-vocals", "params": vocals(), "idempotency_key": "has space"}, "idempotency_key"),
    ({"type": "add-vocals", "params": vocals(), "notify_url": "nope"}, "notify_url"),
    ({"type": "add-vocals", "params": vocals(), "extra": 1}, "extra"),
])
def test_envelope_errors(data, field):
    assert field in errors(data)


def test_not_an_object():
    assert "_schema" in errors(["not", "an", "object"])


def test_backbeat_error_still_caught_as_marshmallows():
    """Given callers written against marshmallow (the CLI), expect them to keep working."""
    with pytest.raises(marshmallow.ValidationError) as info:
        load({"type": "add-vocals", "params": vocals(styleWeight=2)})
    assert isinstance(info.value, ValueError) and "styleWeight" in info.value.messages["params"]


#: JSON numbers at the edges of float and int, as a producer could send them
EXTREMES = ["1e308", "-1e308", "1.7976931348623157e308", "-1e400", "1e400", "1" + "0" * 400,
            "-" + "9" * 400, "NaN", "Infinity", "-Infinity", "5e-324", "-0.0", "1e-400"]


@pytest.mark.parametrize("weight", ["styleWeight", "weirdnessConstraint", "audioWeight"])
@pytest.mark.parametrize("literal", EXTREMES)
def test_numeric_extremes_get_a_field_message(weight, literal):
    """Given a weight at a numeric extreme, expect a field message or a valid rounded weight,
    never an uncaught error (1e308 once overflowed in the step check: HTTP 500)."""
    params = json.loads(json.dumps(vocals()).replace("}", f', "{weight}": {literal}}}'))
    try:
        out = load({"type": "add-vocals", "params": params})
    except ValidationError as err:
        assert list(err.messages["params"]) == [weight]
    else:
        assert out["params"][weight] == 0.0 and str(out["params"][weight]) == "0.0"


@pytest.mark.parametrize(("sent", "stored"), [
    (0.1 + 0.2, 0.3), (0.07, 0.07), (1, 1.0), (0.57, 0.57), (1 - 1e-12, 1.0), (-0.0, 0.0)])
def test_weights_go_out_with_two_decimals(sent, stored):
    out = load({"type": "add-vocals", "params": vocals(audioWeight=sent)})
    assert repr(out["params"]["audioWeight"]) == repr(stored)


@pytest.mark.parametrize(("model", "field", "limit"), [
    ("V5", "title", 80), ("V4_5PLUS", "title", 80), ("V5", "prompt", 5000),
    ("V5", "style", 1000), ("V4", "prompt", 3000), ("V4", "style", 200),
    ("V5", "negativeTags", 1000)])
def test_text_limits_follow_the_model(model, field, limit):
    """Given a text field one character over the model's limit, expect a message naming both;
    at the limit, expect it accepted."""
    models = ("V4_5PLUS", "V5", "V4")
    at = load({"type": "add-vocals", "params": vocals(model=model, **{field: "x" * limit})},
              models=models)
    assert len(at["params"][field]) == limit
    over = vocals(model=model, **{field: "x" * (limit + 1)})
    msgs = errors({"type": "add-vocals", "params": over}, models=models)
    assert msgs["params"][field] == [
        f"Longer than {limit} characters, the limit for model {model}."]


def test_default_model_limits_apply_when_none_is_named():
    msgs = errors({"type": "add-vocals", "params": vocals(title="x" * 81)})
    assert "model V4_5PLUS" in msgs["params"]["title"][0]


def test_an_unknown_model_gets_only_its_own_message():
    msgs = errors({"type": "add-vocals", "params": vocals(model="V9", title="x" * 81)})
    assert list(msgs["params"]) == ["model"]
