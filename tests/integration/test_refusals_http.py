"""Property over real HTTP: a refused request is a JSON 422 naming the field, and the Python
client raises backbeat's ValidationError with the same messages (hypothesis)."""

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.workers.errors import ValidationError

pytestmark = pytest.mark.integration

VALID = {"uploadUrl": "https://example.com/backing.mp3", "title": "City lights",
         "prompt": "[Verse] neon hum", "style": "Jazz", "negativeTags": "screaming"}
#: per field, values that can never pass: extremes, wrong types, broken text, over the limits
NEVER = {
    "styleWeight": st.one_of(st.one_of(st.floats(min_value=1.001), st.floats(max_value=-0.001),
                                       st.integers(min_value=2), st.integers(max_value=-1),
                                       st.floats(allow_nan=True).filter(lambda x: x != x)
                                       ).map(json.dumps),  # inf, nan: Infinity, NaN literals
                             st.sampled_from(["NaN", "Infinity", "-Infinity", "1e308", "-1e400",
                                              "1" + "0" * 400, '"0.5"', "true", "0.123"])),
    "title": st.one_of(st.integers(81, 2000).map(lambda n: json.dumps("t" * n)),
                       st.sampled_from(['"   "', '""', '"a\\ud800"', "12", "null", "[]"])),
    "prompt": st.integers(5001, 9000).map(lambda n: json.dumps("p" * n)),
    "uploadUrl": st.sampled_from(['"ftp://x.example.com/a"', '"nope"', '"https://e.com/\\udfff"',
                                  "{}", '"' + "h" * 3000 + '"']),
    "model": st.sampled_from(['"V9"', '"v5"', "5", '""']),
    "callBackUrl": st.just('"https://evil.example.com/cb"'),
}


@st.composite
def refused(draw):
    """(field, raw JSON body): the valid vocals request with one field made impossible."""
    field = draw(st.sampled_from(sorted(NEVER)))
    literal = draw(NEVER[field])
    params = json.dumps({k: v for k, v in VALID.items() if k != field})
    raw = params[:-1] + f', "{field}": {literal}}}'
    return field, '{"type": "add-vocals", "params": ' + raw + "}"


@pytest.fixture(scope="module")
def producer(redis_server):
    return Client(Settings.from_env())


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=refused())
def test_refusals_name_the_field_over_http_and_in_the_client(web_server, producer, case):
    field, raw = case
    resp = requests.post(f"{web_server}/v1/jobs", data=raw, timeout=30, headers={
        "Authorization": "Bearer producer-token-1", "Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    messages = resp.json()["errors"]["json"]
    assert list(messages) == ["params"] and field in messages["params"], messages
    with pytest.raises(ValidationError) as info:
        body = json.loads(raw)
        producer.enqueue(body["type"], body["params"])
    assert type(info.value) is ValidationError and info.value.messages == messages


AUTH_JSON = {"Authorization": "Bearer producer-token-1", "Content-Type": "application/json"}


@pytest.mark.parametrize(("method", "path", "raw", "where", "field"), [
    ("GET", "/v1/jobs?limit=1e400", None, "query", "limit"),
    ("GET", "/v1/jobs?limit=" + "9" * 5000, None, "query", "limit"),
    ("GET", "/v1/jobs?state=%ED%A0%80", None, "query", "state"),
    ("GET", "/v1/jobs?history=NaN", None, "query", "history"),
    ("POST", "/v1/jobs", "[" * 20000 + "]" * 20000, "json", "_schema"),
    ("POST", "/v1/limiter/pause", "[" * 20000 + "]" * 20000, "json", "_schema"),
    ("POST", "/v1/limiter/pause", '{"reason": "a\\ud800"}', "json", "reason"),
    ("POST", "/v1/jobs", '{"type": "add-vocals", "params": {}, "priority": 1e400}', "json",
     "priority"),
    ("POST", "/v1/jobs", '{"type": "add-vocals", "params": {}, "notify_url": '
     '"https://example.com/\\ud800"}', "json", "notify_url"),
], ids=["limit-overflow", "limit-5000-digits", "state-surrogate", "history-nan", "deep-json",
        "deep-json-pause", "reason-surrogate", "priority-infinity", "notify-url-surrogate"])
def test_hostile_requests_get_a_json_4xx_naming_the_field(web_server, method, path, raw, where,
                                                          field):
    resp = requests.request(method, f"{web_server}{path}", data=raw, headers=AUTH_JSON,
                            timeout=30)
    assert 400 <= resp.status_code < 500, resp.text
    assert field in resp.json()["errors"][where], resp.text
