"""Production mode: every route but the signed callbacks and /healthz needs a bearer token."""

import os

import pytest

from backbeat.api.web import create_app
from backbeat.config.settings import Settings
from backbeat.workers.runtime import Runtime

pytestmark = pytest.mark.integration

PREFIX = "authprod"
TOKEN = {"Authorization": "Bearer producer-token-1"}
#: every closed route (method, path); the coverage test below fails when one is missing
CLOSED = [
    ("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/nope"),
    ("DELETE", "/v1/jobs/nope"), ("POST", "/v1/jobs/nope/retry"), ("GET", "/v1/limiter"),
    ("POST", "/v1/limiter/pause"), ("POST", "/v1/limiter/resume"), ("GET", "/metrics"),
    ("GET", "/openapi.json"), ("GET", "/static/nothing.txt"), ("GET", "/v1/status"),
    ("GET", "/v1/status/stream"),
]
#: the status page's HTML holds no data (its script reads /v1/status* with the token)
OPEN = [("POST", "/v1/callbacks/nope"), ("GET", "/healthz"), ("GET", "/")]


@pytest.fixture(scope="module")
def prod(redis_server):
    """A test client of the app in prod mode, under its own key prefix."""
    settings = Settings.from_env({**os.environ, "BACKBEAT_ENV": "prod",
                                  "BACKBEAT_KEY_PREFIX": PREFIX})
    assert settings.is_prod and settings.api_tokens
    yield create_app(settings).test_client()
    redis = Runtime(settings).redis
    for key in redis.scan_iter(f"{PREFIX}:*"):
        redis.delete(key)


def _call(client, method, path, headers=None):
    return client.open(path, method=method, json={} if method == "POST" else None,
                       headers=headers or {})


@pytest.mark.parametrize(("method", "path"), CLOSED, ids=[f"{m} {p}" for m, p in CLOSED])
def test_closed_without_a_token_open_with_one(prod, method, path):
    """Given prod mode, expect 401 JSON without a token (or with a wrong one), and an answer
    other than 401 with a token from BACKBEAT_API_TOKENS."""
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        resp = _call(prod, method, path, headers)
        assert resp.status_code == 401, (headers, resp.status_code)
        body = resp.get_json()
        assert body["code"] == 401 and "token" in body["message"]
    resp = _call(prod, method, path, TOKEN)
    assert resp.status_code != 401 and resp.status_code < 500, resp.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path"), OPEN, ids=[f"{m} {p}" for m, p in OPEN])
def test_callbacks_and_healthz_need_no_token(prod, method, path):
    """Given prod mode, expect the signed callback URL (403: bad signature) and the liveness
    probe to answer without a bearer token."""
    assert _call(prod, method, path).status_code in (200, 403)


def test_every_route_is_listed(prod):
    """Given the app's URL map, expect each route in CLOSED or OPEN (a new route needs a test)."""
    url_map = prod.application.url_map
    adapter = url_map.bind("localhost")
    listed = {(adapter.match(path, method)[0], method) for method, path in CLOSED + OPEN}
    for rule in url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (rule.endpoint, method) in listed, (method, rule.rule)
