"""Request schemas: every documented field, field-level errors, callBackUrl refused."""

import pytest
from marshmallow import ValidationError

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
    ("title", "x" * 101, "between 1 and 100"),
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
