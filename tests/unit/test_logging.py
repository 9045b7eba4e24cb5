"""Process logging (config/logging.py): JSON lines, one line per transition, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import datetime
from typing import Any

import pytest
from celery import signals

from backbeat.config.logging import JsonFormatter, TextFormatter, configure_logging
from backbeat.config.settings import Secret, Settings, get_settings
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState

S = JobState
SECRETS = {"BACKBEAT_API_KEY": "sk-unit-4f1c9e2a7b", "BACKBEAT_SECRET": "sign-9d8c7b6a5f4e",
           "BACKBEAT_API_TOKENS": "tok-alpha-1234,tok-beta-5678",
           "BACKBEAT_PROVIDER_WEBHOOK_KEY": "hmac-0a1b2c3d4e"}
SECRET_VALUES = ["sk-unit-4f1c9e2a7b", "sign-9d8c7b6a5f4e", "tok-alpha-1234", "tok-beta-5678",
                 "hmac-0a1b2c3d4e"]


@pytest.fixture(autouse=True)
def restore_logging():
    """Each test configures the process's logging; put back what was there before."""
    loggers = [logging.getLogger(), logging.getLogger("multiprocessing")]
    saved = [(lg, lg.handlers[:], lg.level) for lg in loggers]
    yield
    for lg, handlers, level in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
    get_settings.cache_clear()


def env_settings(**env: str) -> Settings:
    """The suite's environment (conftest.TEST_ENV) with ``env`` on top."""
    return Settings.from_env({**os.environ, **env})


def configured(**env: str) -> io.StringIO:
    buf = io.StringIO()
    configure_logging(env_settings(**env), stream=buf)
    return buf


def records(buf: io.StringIO) -> list[dict[str, Any]]:
    """Every line of ``buf`` parsed as one JSON object (fails on any other line)."""
    out = []
    for line in buf.getvalue().splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


# -- formats -----------------------------------------------------------------------------------

def test_json_is_one_object_per_line_with_the_fields():
    buf = configured(BACKBEAT_LOG_FORMAT="json")
    log = logging.getLogger("backbeat.test")
    log.info("job %s moved", "j1", extra={"job": "j1", "account": "sunoapi-abc", "from": "queued",
                                           "to": "submitting", "reason": "claimed",
                                           "outcome": "accepted", "code": 200})
    log.warning("a message\nover two lines")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed", extra={"job": "j2"})
    lines = records(buf)
    assert len(lines) == 3  # one line per record, whatever the message or traceback holds
    first, second, third = lines
    assert first["msg"] == "job j1 moved" and first["level"] == "INFO"
    assert first["logger"] == "backbeat.test"
    assert first["ts"].endswith("Z")
    assert datetime.fromisoformat(first["ts"]).utcoffset().total_seconds() == 0
    assert {k: first[k] for k in ("job", "account", "from", "to", "reason", "outcome", "code")} \
        == {"job": "j1", "account": "sunoapi-abc", "from": "queued", "to": "submitting",
            "reason": "claimed", "outcome": "accepted", "code": 200}
    assert second["msg"] == "a message\nover two lines" and second["level"] == "WARNING"
    assert third["level"] == "ERROR" and third["job"] == "j2"
    assert "Traceback" in third["exc"] and "ValueError: boom" in third["exc"]
    assert "exc" not in first


def test_text_is_one_readable_line():
    buf = configured(BACKBEAT_LOG_FORMAT="text")
    logging.getLogger("backbeat.test").warning("job %s stuck", "j9", extra={"job": "j9"})
    (line,) = buf.getvalue().splitlines()
    stamp, level, process, rest = line.split(" ", 3)
    assert stamp.endswith("Z") and datetime.fromisoformat(stamp)
    assert (level, process) == ("WARNING", "[MainProcess]")
    assert rest == "backbeat.test: job j9 stuck"


def test_a_second_call_replaces_its_handler_and_keeps_others():
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    first = configure_logging(env_settings(), stream=io.StringIO())
    second = configure_logging(env_settings(BACKBEAT_LOG_FORMAT="json"), stream=io.StringIO())
    handlers = logging.getLogger().handlers
    assert second in handlers and first not in handlers and other in handlers
    assert isinstance(second.formatter, JsonFormatter)
    assert logging.getLogger("multiprocessing").handlers.count(second) == 1


# -- transitions --------------------------------------------------------------------------------

@pytest.fixture
def rt(redis) -> Runtime:
    return Runtime(env_settings(BACKBEAT_LOG_FORMAT="json"))


def test_a_transition_logs_one_line_with_job_from_to_reason_and_account(rt):
    rt.store.create("jl1", "add-instrumental", {"title": "t"})
    buf = configured(BACKBEAT_LOG_FORMAT="json")
    assert rt.store.transition("jl1", S.SUBMITTING, "claimed", fields={"attempt_id": "a1"}).applied
    (line,) = records(buf)
    assert line["msg"] == f"job jl1 queued -> submitting (claimed) account {rt.account}"
    assert {k: line[k] for k in ("job", "from", "to", "reason", "account", "level", "logger")} \
        == {"job": "jl1", "from": "queued", "to": "submitting", "reason": "claimed",
            "account": rt.account, "level": "INFO", "logger": "backbeat.workers.store"}
    assert rt.account.startswith("sunoapi-")
    assert os.environ["BACKBEAT_API_KEY"] not in buf.getvalue()


def test_a_refused_transition_logs_nothing(rt):
    rt.store.create("jl2", "add-instrumental", {"title": "t"})
    assert rt.store.transition("jl2", S.SUBMITTING, "claimed", fields={"attempt_id": "a1"}).applied
    buf = configured(BACKBEAT_LOG_FORMAT="json")
    refused = [rt.store.transition("jl2", S.QUEUED, "late", require_from=S.QUEUED),
               rt.store.transition("jl2", S.SUBMITTED, "stale", require_attempt="other"),
               rt.store.transition("jl2", S.SUBMITTING, "again"),
               rt.store.transition("no-such-job", S.SUBMITTING, "ghost")]
    assert not any(r.applied for r in refused)
    assert buf.getvalue() == ""


# -- secrets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secret_values_never_appear(fmt):
    buf = configured(BACKBEAT_LOG_FORMAT=fmt, BACKBEAT_LOG_LEVEL="DEBUG", **SECRETS)
    key, secret = SECRETS["BACKBEAT_API_KEY"], SECRETS["BACKBEAT_SECRET"]
    log = logging.getLogger("backbeat.test")
    log.info(f"configured with key {key} and secret {secret}")
    log.info("tokens %s and %s, webhook key %s", *SECRET_VALUES[2:])
    log.info("a Secret object: %s %r", Secret(key), Secret(secret))
    log.info("in a field", extra={"job": f"j-{key}", "headers": {"Authorization": key}})
    # a library's debug line with the request headers, as http.client/urllib3 print them
    logging.getLogger("urllib3.connectionpool").debug(
        "send: %r", f"POST /api/v1/generate HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {key}\r\nX-Sig: {secret}\r\n\r\n".encode())
    logging.getLogger("requests").debug("headers: %s", {"Authorization": f"Bearer {key}"})
    try:
        raise RuntimeError(f"refused {key}")
    except RuntimeError:
        log.exception("call failed for %s", secret)
    out = buf.getvalue()
    assert out.count("\n") >= 7 and "***" in out
    for value in SECRET_VALUES:
        assert value not in out, value
    if fmt == "json":
        assert len(records(buf)) == 7


def test_any_authorization_header_is_masked_even_an_unknown_one():
    buf = configured(BACKBEAT_LOG_FORMAT="text")
    logging.getLogger("urllib3").warning("sent {'Authorization': 'Bearer stranger-token-42'}")
    logging.getLogger("urllib3").warning("Authorization: Basic dXNlcjpwYXNz")
    logging.getLogger("backbeat").warning("authorization failed: check the key")
    out = buf.getvalue()
    assert "stranger-token-42" not in out and "dXNlcjpwYXNz" not in out
    assert out.count("***") == 2
    assert "authorization failed: check the key" in out  # no credential: left as it is


def test_gunicorns_own_handlers_get_the_format_and_the_filter():
    gunicorn = logging.getLogger("gunicorn.error")
    buf = io.StringIO()
    own = logging.StreamHandler(buf)
    gunicorn.addHandler(own)
    try:
        configure_logging(env_settings(BACKBEAT_LOG_FORMAT="json", **SECRETS),
                          stream=io.StringIO())
        gunicorn.warning("header Authorization: %s", SECRETS["BACKBEAT_API_KEY"])
    finally:
        gunicorn.removeHandler(own)
    (line,) = records(buf)
    assert line["logger"] == "gunicorn.error" and SECRETS["BACKBEAT_API_KEY"] not in buf.getvalue()


# -- settings ------------------------------------------------------------------------------------

def test_the_level_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("BACKBEAT_LOG_LEVEL", "warning")
    get_settings.cache_clear()
    buf = io.StringIO()
    configure_logging(stream=buf)  # no settings given: the process's environment
    assert logging.getLogger().level == logging.WARNING
    log = logging.getLogger("backbeat.test")
    log.info("hidden")
    log.warning("shown")
    assert "hidden" not in buf.getvalue() and "shown" in buf.getvalue()
    monkeypatch.setenv("BACKBEAT_LOG_LEVEL", "DEBUG")
    get_settings.cache_clear()
    configure_logging(stream=buf)
    log.debug("now visible")
    assert "now visible" in buf.getvalue()


def test_defaults_are_text_at_info():
    s = Settings.from_env({})
    assert (s.log_format, s.log_level) == ("text", "INFO")
    assert Settings.from_env({"BACKBEAT_LOG_FORMAT": "JSON"}).log_format == "json"


@pytest.mark.parametrize("env, value", [("BACKBEAT_LOG_LEVEL", "LOUD"),
                                        ("BACKBEAT_LOG_LEVEL", "10"),
                                        ("BACKBEAT_LOG_LEVEL", "NOTSET"),
                                        ("BACKBEAT_LOG_FORMAT", "xml"),
                                        ("BACKBEAT_LOG_FORMAT", "")])
def test_a_bad_level_or_format_is_an_error_naming_the_variable(env, value):
    with pytest.raises(ValueError, match=env):
        Settings.from_env({env: value})


# -- wiring --------------------------------------------------------------------------------------

def test_celery_worker_and_beat_use_it():
    """Celery configures no logger of its own when a setup_logging receiver answers."""
    from backbeat.workers import app  # noqa: F401 - connects the receivers

    answers = signals.setup_logging.send(sender=None, loglevel=logging.INFO, logfile=None,
                                         format="", colorize=False)
    assert answers and not any(isinstance(a, Exception) for _, a in answers)
    assert any(getattr(h, "_backbeat_handler", False) for h in logging.getLogger().handlers)


def test_create_app_configures_the_web_process(monkeypatch):
    """``create_app()`` (gunicorn's call: the process's own app) configures the process;
    an app built for settings passed in (tests, an embedding host) leaves logging alone."""
    from backbeat.api.web import create_app

    def ours() -> list[logging.Handler]:
        return [h for h in logging.getLogger().handlers if getattr(h, "_backbeat_handler", False)]

    for h in ours():
        logging.getLogger().removeHandler(h)
    create_app(env_settings(BACKBEAT_LOG_FORMAT="json"))
    assert ours() == []
    monkeypatch.setenv("BACKBEAT_LOG_FORMAT", "json")
    get_settings.cache_clear()
    create_app()
    (handler,) = ours()
    assert isinstance(handler.formatter, JsonFormatter)
    monkeypatch.setenv("BACKBEAT_LOG_FORMAT", "text")
    get_settings.cache_clear()
    create_app()
    (handler,) = ours()
    assert isinstance(handler.formatter, TextFormatter)
