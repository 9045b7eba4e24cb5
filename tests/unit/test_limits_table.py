"""The per-model limits table (provider/models.py) and the two validators that read it."""

import pytest

from backbeat.provider.models import MODEL_LIMITS, STRICTEST, TEXT_FIELDS, limits_for
from backbeat.simulator.validation import Invalid, validate

BODY = {"uploadUrl": "https://example.com/b.mp3", "title": "T", "prompt": "la", "style": "Jazz",
        "negativeTags": "", "callBackUrl": "https://example.com/cb"}


def test_documented_figures_with_the_stricter_title():
    """Given the providers' 80 vs 100 for title, expect 80 for every model."""
    assert {row.title for row in MODEL_LIMITS.values()} == {80}
    assert (limits_for("V5").prompt, limits_for("V5").style) == (5000, 1000)
    assert (limits_for("V4").prompt, limits_for("V4").style) == (3000, 200)
    assert limits_for("V5_5") == limits_for("V4_5PLUS")


def test_an_unknown_model_gets_the_strictest_of_each_column():
    for name in TEXT_FIELDS:
        assert limits_for("V9").of(name) == min(r.of(name) for r in MODEL_LIMITS.values())
    assert limits_for("V9") is STRICTEST and STRICTEST.of("uploadUrl") is None


@pytest.mark.parametrize(("model", "field"), [("V5", "prompt"), ("V5", "style"),
                                              ("V4_5PLUS", "negativeTags")])
@pytest.mark.parametrize("profile", ["kie", "sunoapi"])
def test_simulator_reads_the_same_table(profile, model, field):
    """Given a field at and over the model's limit, expect the simulator to accept it at the
    limit and refuse it as too long one character over, naming the model."""
    limit = limits_for(model).of(field)
    validate("add-vocals", {**BODY, "model": model, field: "x" * limit}, profile)
    with pytest.raises(Invalid) as info:
        validate("add-vocals", {**BODY, "model": model, field: "x" * (limit + 1)}, profile)
    assert info.value.situation == "too_long" and model in str(info.value)
    assert field in str(info.value)
