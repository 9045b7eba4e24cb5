"""Property: what backbeat accepts, the simulator's strict validation accepts; what it refuses
carries field messages (hypothesis)."""

import json

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from backbeat.simulator.validation import validate
from backbeat.workers.errors import ValidationError
from backbeat.workers.schemas import PARAMS_SCHEMAS, load_job_request

MODELS = ("V4_5PLUS", "V5")
CALLBACK = "https://gateway.example.com/v1/callbacks/j1?sig=abc"
HOSTILE_TEXT = ["", " ", "\t\n", "a\ud800b", "\udfff", "\x00", "x" * 81, "x" * 1001, "x" * 5001]

texts = st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_TEXT),
                  st.integers(0, 6000).map(lambda n: "y" * n))
numbers = st.one_of(
    st.integers(0, 100).map(lambda n: n / 100), st.floats(), st.integers(-(10**400), 10**400),
    st.sampled_from([0.1 + 0.2, 0.123, 1e308, -1e308, 5e-324, -0.0, 1 - 1e-12, 0.07]),
)
anything = st.one_of(st.none(), st.booleans(), texts, numbers, st.lists(st.integers(), max_size=2))
urls = st.one_of(st.sampled_from([
    "https://example.com/a.mp3", "http://cdn.example.org/x/y.wav?sig=1", "http://[::1]/a.mp3",
    "http://localhost/a.mp3", "ftp://example.com/a.mp3", "https://example.com/\ud800",
    "not a url", "https://", "http://exa mple.com/a"]), st.text(max_size=20))


VOCALS = {"uploadUrl": "https://example.com/b.mp3", "title": "T", "prompt": "la",
          "style": "Jazz", "negativeTags": "metal"}
valid_text = st.text(min_size=1, max_size=80).filter(str.strip)
valid_weight = st.one_of(st.integers(0, 100).map(lambda n: n / 100),
                         st.sampled_from([0.1 + 0.2, 1 - 1e-12, -0.0, 5e-324, 0, 1]))
OPTIONAL = {"model": st.sampled_from(MODELS), "vocalGender": st.sampled_from(["m", "f"]),
            "styleWeight": valid_weight, "weirdnessConstraint": valid_weight,
            "audioWeight": valid_weight}
FIELDS = {"add-instrumental": ("uploadUrl", "title", "negativeTags", "tags"),
          "add-vocals": ("uploadUrl", "title", "negativeTags", "prompt", "style")}
hostile_text = st.one_of(st.sampled_from(HOSTILE_TEXT), texts)
hostile = {"title": hostile_text, "prompt": hostile_text, "style": hostile_text,
           "tags": hostile_text, "negativeTags": hostile_text, "uploadUrl": urls,
           "model": st.sampled_from(["V5_5", "V9", "", "v5"]),
           "vocalGender": st.sampled_from(["x", "M", ""]), "styleWeight": numbers,
           "weirdnessConstraint": numbers, "audioWeight": numbers, "callBackUrl": urls}


@st.composite
def requests(draw):
    """A valid request, then none, one or two fields replaced, dropped or added (hostile)."""
    job_type = draw(st.sampled_from(sorted(FIELDS)))
    params = {name: draw(valid_text) for name in FIELDS[job_type]}
    params["uploadUrl"] = draw(st.sampled_from(["https://example.com/a.mp3",
                                                "http://cdn.example.org/x/y.wav?sig=1"]))
    params.update(draw(st.fixed_dictionaries({}, optional=OPTIONAL)))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*FIELDS[job_type], *OPTIONAL, "callBackUrl", "extra"]))
        if draw(st.booleans()):
            params[name] = draw(st.one_of(hostile.get(name, texts), anything))
        else:
            params.pop(name, None)
    return json.loads(json.dumps({"type": job_type, "params": params}))  # as JSON decodes it


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
@example(request={"type": "add-vocals", "params": {**VOCALS, "style": " \t"}})
@example(request={"type": "add-vocals", "params": {**VOCALS, "title": "x" * 101}})
@example(request={"type": "add-vocals", "params": {**VOCALS, "prompt": "p" * 5001}})
@example(request={"type": "add-vocals", "params": {**VOCALS, "audioWeight": 0.1 + 0.2}})
def test_accepted_means_the_simulator_accepts_and_refused_names_fields(request):
    try:
        out = load_job_request(request, MODELS, "V4_5PLUS")
        event("accepted")
    except ValidationError as err:
        assert type(err) is ValidationError and set(err.messages) == {"params"}
        known = set(PARAMS_SCHEMAS[request["type"]]().fields) | set(request["params"])
        for field, messages in err.messages["params"].items():
            assert field in known
            assert messages and all(isinstance(m, str) and m for m in messages)
        return
    body = {**out["params"], "callBackUrl": CALLBACK}
    body = json.loads(json.dumps(body))  # as sent over the wire
    for profile in ("kie", "sunoapi"):
        validate(request["type"], body, profile)  # raises Invalid on any disagreement
