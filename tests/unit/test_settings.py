"""Settings: rate specs, validation of env values, secrets that never print."""

import pytest

from backbeat.config.settings import RateSpec, Secret, Settings
from backbeat.provider.profiles import Outcome, get_profile


@pytest.mark.parametrize(("text", "limit", "window_ms"), [
    ("20/10s", 20, 10_000), ("5/1s", 5, 1000), ("5/s", 5, 1000), ("100/m", 100, 60_000),
    ("3/500ms", 3, 500), ("1000/1h", 1000, 3_600_000), (" 7 / 2.5s ", 7, 2500),
])
def test_rate_spec_parses(text, limit, window_ms):
    assert RateSpec.parse(text) == RateSpec(limit, window_ms)


@pytest.mark.parametrize("text", ["", "20", "x/10s", "0/10s", "20/0s", "20/10d", "-1/1s"])
def test_rate_spec_rejects(text):
    with pytest.raises(ValueError):
        RateSpec.parse(text)


def test_secret_never_prints():
    s = Secret("sk-very-secret")
    assert "sk-very" not in repr(s) and "sk-very" not in str(s) and "sk-very" not in f"{s}"
    assert s.reveal() == "sk-very-secret"
    settings = Settings.from_env({"BACKBEAT_API_KEY": "sk-very-secret",
                                  "BACKBEAT_SECRET": "sign-me", "BACKBEAT_API_TOKENS": "t1,t2"})
    assert "sk-very-secret" not in repr(settings)
    assert "sign-me" not in repr(settings) and "t1" not in repr(settings.api_tokens)


def test_defaults_follow_the_design():
    s = Settings.from_env({})
    assert s.provider.name == "sunoapi" and s.api_base_url == "https://api.sunoapi.org"
    assert s.submit_rate == RateSpec(20, 10_000) and s.submit_burst == 1
    assert s.poll_rate == RateSpec(5, 1000) and s.uncertain_grace_s == 300
    assert s.broker_url == s.redis_url == "redis://127.0.0.1:6379/0"


def test_fallbacks_and_trimming():
    """Given no broker, base URL or per-type deadline, expect them read from the Redis URL,
    the provider profile and BACKBEAT_DEADLINE; URLs lose a trailing slash."""
    s = Settings.from_env({"BACKBEAT_REDIS_URL": "redis://h:1/2", "BACKBEAT_PROVIDER": "kie",
                           "BACKBEAT_CALLBACK_BASE_URL": "https://gw.example/",
                           "BACKBEAT_DEADLINE": "600", "BACKBEAT_DEADLINE_ADD_VOCALS": "60",
                           "BACKBEAT_API_TOKENS": " t1, ,t2 ", "BACKBEAT_MODELS": "V5, V4",
                           "BACKBEAT_DEFAULT_MODEL": "V4"})
    assert s.broker_url == "redis://h:1/2" and s.api_base_url == get_profile("kie").base_url
    assert s.callback_base_url == "https://gw.example"
    assert s.deadline_s("add-vocals") == 60 and s.deadline_s("add-instrumental") == 600
    assert s.api_tokens == (Secret("t1"), Secret("t2")) and s.models == ("V5", "V4")
    other = Settings.from_env({"BACKBEAT_API_BASE_URL": "http://127.0.0.1:9000/",
                               "BACKBEAT_BROKER_URL": "redis://b/0"})
    assert other.api_base_url == "http://127.0.0.1:9000" and other.broker_url == "redis://b/0"


@pytest.mark.parametrize(("env", "needle"), [
    ({"BACKBEAT_PROVIDER": "acme"}, "BACKBEAT_PROVIDER: unknown provider"),
    ({"BACKBEAT_SUBMIT_RATE": "fast"}, "BACKBEAT_SUBMIT_RATE: .*N/Ws"),
    ({"BACKBEAT_MAX_ATTEMPTS": "zero"}, "BACKBEAT_MAX_ATTEMPTS must be an integer, got 'zero'"),
    ({"BACKBEAT_SUBMIT_BURST": "0"}, "BACKBEAT_SUBMIT_BURST must be >= 1"),
    ({"BACKBEAT_DEADLINE_ADD_VOCALS": "soon"}, "BACKBEAT_DEADLINE_ADD_VOCALS must be a number"),
    ({"BACKBEAT_WEBHOOK_ALLOW_PRIVATE": "maybe"}, "BACKBEAT_WEBHOOK_ALLOW_PRIVATE must be true"),
    ({"BACKBEAT_ENV": "prod"}, "BACKBEAT_SECRET"),
    ({"BACKBEAT_DEFAULT_MODEL": "V9"}, "BACKBEAT_MODELS"),
    ({"BACKBEAT_UNCERTAIN_POLICY": "maybe"}, "resubmit"),
])
def test_bad_env_values_are_named(env, needle):
    with pytest.raises(ValueError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize(("provider", "code", "outcome"), [
    ("kie", 429, Outcome.THROTTLED), ("sunoapi", 429, Outcome.CREDITS),
    ("sunoapi", 430, Outcome.THROTTLED), ("sunoapi", 405, Outcome.THROTTLED),
    ("kie", 402, Outcome.CREDITS), ("kie", 455, Outcome.MAINTENANCE),
    ("sunoapi", 455, Outcome.MAINTENANCE), ("kie", 401, Outcome.UNAUTHORIZED),
    ("kie", 422, Outcome.REJECTED), ("kie", 451, Outcome.REJECTED), ("kie", 409, Outcome.REJECTED),
    ("sunoapi", 413, Outcome.REJECTED), ("sunoapi", 400, Outcome.REJECTED),
    ("kie", 500, Outcome.TRANSIENT), ("sunoapi", 503, Outcome.TRANSIENT),
    ("sunoapi", 999, Outcome.TRANSIENT), ("kie", 200, Outcome.ACCEPTED),
])
def test_profiles_map_codes_as_designed(provider, code, outcome):
    assert get_profile(provider).outcome_for(code) is outcome
