"""The small public face: what the Python client exposes, the errors it raises, and the CLI's
behaviour when Redis is not there (one line, no traceback), its lazy subcommands and choices."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import marshmallow
import pytest

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.devstack.processes import free_port, start_redis, venv_bin
from backbeat.provider.profiles import JOB_TYPES
from backbeat.workers.errors import (
    BackbeatError,
    Conflict,
    IdempotencyConflict,
    InvalidTransition,
    JobNotFound,
    Unavailable,
    ValidationError,
    WaitTimeout,
)
from backbeat.workers.states import JobState

PUBLIC = {"enqueue", "get", "wait", "follow", "history", "cancel", "retry", "list", "events",
          "overview", "position",
          "limiter", "pause", "resume"}
PASSWORD = "hunter2-not-printed"
VOCALS = {"uploadUrl": "https://example.com/backing.mp3", "title": "City lights",
          "prompt": "[Verse] neon hum", "style": "Jazz", "negativeTags": "screaming"}


def _no_redis_url(password: str = "") -> str:
    """A Redis URL on a loopback port with nothing listening (free a moment ago)."""
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{free_port()}/0"


def _cli(*args: str, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("backbeat"), *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


# -- the client's names ---------------------------------------------------------------------


def test_client_exposes_exactly_the_public_methods():
    assert {n for n in dir(Client) if not n.startswith("_")} == PUBLIC


def test_client_keeps_its_runtime_private(settings):
    client = Client(settings)
    assert [n for n in vars(client) if not n.startswith("_")] == []
    assert not hasattr(client, "rt")


def test_conflicts_share_one_base_and_keep_their_attributes():
    assert issubclass(IdempotencyConflict, Conflict) and issubclass(InvalidTransition, Conflict)
    assert issubclass(Conflict, BackbeatError)
    idem = IdempotencyConflict("k", "j1")
    assert (idem.key, idem.job_id) == ("k", "j1")
    bad = InvalidTransition("j1", "submitted", "cancelled")
    assert (bad.job_id, bad.state, bad.wanted) == ("j1", "submitted", "cancelled")
    # compatibility: what callers caught before still matches
    assert issubclass(ValidationError, marshmallow.ValidationError)
    assert issubclass(JobNotFound, LookupError) and issubclass(WaitTimeout, TimeoutError)


# -- the client's errors, on a real Redis ---------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    ({"state": "bogus"}, "state"),
    ({"type": "add-bagpipes"}, "type"),
    ({"limit": 0}, "limit"),
    ({"limit": 201}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"cursor": "!!not-a-cursor"}, "cursor"),
])
def test_list_refuses_bad_arguments_naming_the_field(client, kwargs, field):
    with pytest.raises(ValidationError) as info:
        client.list(**kwargs)
    assert list(info.value.messages) == [field]


def test_list_takes_every_state_and_job_type(client):
    for state in JobState:
        assert client.list(state=state.value) == ([], None)
    for job_type in JOB_TYPES:
        assert client.list(type=job_type, limit=200) == ([], None)


@pytest.mark.parametrize("call, field", [
    (lambda c: c.enqueue("add-bagpipes", VOCALS), "type"),
    (lambda c: c.enqueue("add-vocals", {**VOCALS, "title": None}), "params"),
    (lambda c: c.enqueue("add-vocals", VOCALS, priority=99), "priority"),
    (lambda c: c.enqueue("add-vocals", VOCALS, notify_url="http://127.0.0.1/hook"),
     "notify_url"),
    (lambda c: c.get(""), "job_id"),
    (lambda c: c.cancel(None), "job_id"),
    (lambda c: c.follow("x", timeout=-1), "timeout"),
    (lambda c: c.events("not-an-id", block_ms=None), "last_id"),
    (lambda c: c.events(block_ms=-5), "block_ms"),
    (lambda c: c.pause(""), "reason"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_is_backbeats_validation_error(client, call, field):
    with pytest.raises(ValidationError) as info:
        call(client)
    assert field in info.value.messages


@pytest.mark.parametrize("call", [
    lambda c: c.get("no-such-job"),
    lambda c: c.cancel("no-such-job"),
    lambda c: c.retry("no-such-job"),
    lambda c: c.history("no-such-job"),
    lambda c: c.follow("no-such-job"),  # raised at the call, before iterating
    lambda c: c.wait("no-such-job", timeout=1),
], ids=["get", "cancel", "retry", "history", "follow", "wait"])
def test_a_missing_job_is_job_not_found(client, call):
    with pytest.raises(JobNotFound) as info:
        call(client)
    assert info.value.job_id == "no-such-job"


def test_conflicts_are_conflict(client):
    client.pause("test")  # a worker left running by another test parks it: it stays queued
    job = client.enqueue("add-vocals", VOCALS, idempotency_key="face-1")
    assert client.enqueue("add-vocals", VOCALS, idempotency_key="face-1")["id"] == job["id"]
    with pytest.raises(Conflict) as info:
        client.enqueue("add-vocals", {**VOCALS, "title": "Other"}, idempotency_key="face-1")
    assert isinstance(info.value, IdempotencyConflict) and info.value.job_id == job["id"]
    with pytest.raises(Conflict) as info:
        client.retry(job["id"])  # queued: nothing to retry
    assert isinstance(info.value, InvalidTransition) and info.value.state == "queued"
    assert client.cancel(job["id"])["state"] == "cancelled"
    with pytest.raises(InvalidTransition):
        client.cancel(job["id"])
    assert [h["to"] for h in client.history(job["id"])] == ["queued", "cancelled"]
    assert client.wait(job["id"], timeout=1)["state"] == "cancelled"
    with pytest.raises(WaitTimeout):
        client.wait(job["id"], timeout=0.2, until=frozenset({JobState.SUCCEEDED}))


def test_limiter_pause_resume_and_events(client):
    tail = client.events("0-0", block_ms=None, count=1000)
    client.pause("face test")
    assert client.limiter()["pause"]["reason"] == "face test"
    # enqueued while paused: the session's worker cannot move it on before events are read
    job = client.enqueue("add-vocals", VOCALS)
    after = client.events(tail[-1][0] if tail else "0-0", block_ms=None)
    assert [(e["job"], e["to"]) for _, e in after] == [(job["id"], "queued")]
    client.resume()
    assert not client.limiter()["pause"]["paused"]


@pytest.mark.parametrize("call", [
    lambda c: c.enqueue("add-vocals", VOCALS),
    lambda c: c.get("j"),
    lambda c: c.cancel("j"),
    lambda c: c.retry("j"),
    lambda c: c.history("j"),
    lambda c: c.list(),
    lambda c: c.follow("j"),
    lambda c: c.wait("j", timeout=1),
    lambda c: c.events(block_ms=None),
    lambda c: c.limiter(),
    lambda c: c.pause(),
    lambda c: c.resume(),
], ids=["enqueue", "get", "cancel", "retry", "history", "list", "follow", "wait", "events",
        "limiter", "pause", "resume"])
def test_unreachable_redis_is_unavailable_naming_the_url_without_its_password(call):
    url = _no_redis_url(PASSWORD)
    client = Client(Settings.from_env({**os.environ, "BACKBEAT_REDIS_URL": url}))
    with pytest.raises(Unavailable) as info:
        call(client)
    assert url.replace(PASSWORD, "***") in str(info.value)
    assert PASSWORD not in str(info.value) and "\n" not in str(info.value)


def test_a_malformed_redis_url_is_a_value_error_at_construction():
    env = {**os.environ, "BACKBEAT_REDIS_URL": "redis://127.0.0.1:6379/0?socket_timeout=abc"}
    with pytest.raises(ValueError, match="BACKBEAT_REDIS_URL"):
        Client(Settings.from_env(env))


# -- HTTP answers of the conflicts ----------------------------------------------------------


def test_http_maps_conflicts_to_409(redis, settings):
    from backbeat.api.web import create_app

    http = create_app(settings).test_client()
    auth = {"Authorization": "Bearer producer-token-1"}
    # a worker left running by another test parks the job instead of taking it: it stays queued
    assert http.post("/v1/limiter/pause", json={"reason": "test"}, headers=auth).status_code == 200
    body = {"type": "add-vocals", "params": VOCALS, "idempotency_key": "face-http"}
    first = http.post("/v1/jobs", json=body, headers=auth)
    assert first.status_code == 202
    job_id = first.get_json()["id"]
    other = http.post("/v1/jobs", json={**body, "params": {**VOCALS, "title": "Other"}},
                      headers=auth)
    assert other.status_code == 409
    assert other.get_json() == {"code": 409, "status": "Conflict", "message":
                                f"idempotency key already used for job {job_id} with other "
                                "parameters"}
    assert http.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 200
    again = http.delete(f"/v1/jobs/{job_id}", headers=auth)
    assert again.status_code == 409
    assert again.get_json() == {"code": 409, "status": "Conflict", "message":
                                f"job {job_id} is cancelled; it cannot become cancelled"}
    retry = http.post(f"/v1/jobs/{job_id}/retry", headers=auth)
    assert retry.status_code == 409 and "cannot become queued" in retry.get_json()["message"]
    assert http.get("/v1/jobs/nope", headers=auth).status_code == 404


# -- the CLI --------------------------------------------------------------------------------

UNREACHABLE_COMMANDS = [
    ("jobs",),
    ("jobs", "--state", "failed", "--history"),
    ("status", "some-job"),
    ("status", "some-job", "--follow"),
    ("retry", "some-job"),
    ("watch",),
    ("watch", "--once"),
    ("watch", "--events", "--count", "1"),
    ("limiter",),
    ("limiter", "pause", "--reason", "x"),
    ("limiter", "resume"),
    ("enqueue", "add-vocals", "--json",
     '{"uploadUrl": "https://example.com/b.mp3", "title": "T", "prompt": "la", '
     '"style": "Jazz", "negativeTags": "none"}'),
]


@pytest.mark.parametrize("args", UNREACHABLE_COMMANDS,
                         ids=lambda args: " ".join(a for a in args if "{" not in a))
def test_cli_with_unreachable_redis_prints_one_line_and_exits_69(args):
    url = _no_redis_url(PASSWORD)
    out = _cli(*args, env={"BACKBEAT_REDIS_URL": url})
    assert out.returncode == 69, (out.stdout, out.stderr)
    assert "Traceback" not in out.stdout + out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert url.replace(PASSWORD, "***") in lines[0] and PASSWORD not in lines[0]


def test_cli_when_redis_dies_mid_command_prints_one_line(tmp_path: Path):
    from redis import Redis

    port = free_port()
    server = start_redis(tmp_path, port)
    try:
        watch = subprocess.Popen(
            [venv_bin("backbeat"), "watch", "--events"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True, env={**os.environ, "BACKBEAT_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                            "BACKBEAT_KEY_PREFIX": "face"})
        probe = Redis(port=port, decode_responses=True)
        end = time.monotonic() + 30
        while not any(c.get("cmd") == "xread" for c in probe.client_list()):
            assert time.monotonic() < end and watch.poll() is None, "watch never blocked"
            time.sleep(0.05)
        probe.close()
    finally:
        server.stop()
    try:
        stdout, stderr = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert watch.returncode == 69, (stdout, stderr)
    assert "Traceback" not in stdout + stderr and len(stderr.splitlines()) == 1, stderr
    assert f"redis://127.0.0.1:{port}/0" in stderr


def test_watch_view_when_redis_dies_prints_one_line(tmp_path: Path):
    """The live view (piped: a line per change) loses its Redis after its first look: one line
    on stderr, status 69, no traceback."""
    import select

    port = free_port()
    server = start_redis(tmp_path, port)
    try:
        watch = subprocess.Popen(
            [venv_bin("backbeat"), "watch", "--interval", "0.2"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "BACKBEAT_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                 "BACKBEAT_KEY_PREFIX": "face"})
        ready, _, _ = select.select([watch.stdout], [], [], 60)
        assert ready and watch.poll() is None, "watch never showed the fleet"
        first = watch.stdout.readline()
    finally:
        server.stop()
    try:
        stdout, stderr = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert "breaker closed" in first, first
    assert watch.returncode == 69, (first, stdout, stderr)
    assert "Traceback" not in stdout + stderr and len(stderr.splitlines()) == 1, stderr
    assert f"redis://127.0.0.1:{port}/0" in stderr


def test_cli_bad_setting_stays_a_usage_error():
    out = _cli("jobs", env={"BACKBEAT_SUBMIT_RATE": "bogus"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "BACKBEAT_SUBMIT_RATE" in out.stderr


def test_importing_the_cli_loads_neither_the_simulator_nor_the_devstack():
    code = ("import sys, backbeat.api.cli; "
            "loaded = [m for m in sys.modules "
            "if m.startswith(('backbeat.simulator', 'backbeat.devstack'))]; "
            "assert not loaded, loaded")
    _python_ok(code)


def test_help_still_lists_the_lazy_commands_and_they_run():
    from click.testing import CliRunner

    from backbeat.api.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["--help"])
    assert listed.exit_code == 0
    commands = listed.output.split("Commands:")[1]
    for name in ("sim", "demo", "enqueue", "status", "jobs", "retry", "watch", "limiter"):
        assert f"\n  {name} " in commands, listed.output
    for name in ("sim", "demo"):
        assert runner.invoke(main, [name, "--help"]).exit_code == 0


def test_cli_choices_come_from_the_one_source():
    from backbeat.api.cli import main

    def choices(command, name):
        return list(next(p for p in command.params if p.name == name).type.choices)

    assert choices(main.commands["enqueue"], "job_type") == list(JOB_TYPES)
    assert choices(main.commands["jobs"], "job_type") == list(JOB_TYPES)
    assert choices(main.commands["jobs"], "state") == [s.value for s in JobState]
    # and they follow it: a job type added there shows up here (a fresh interpreter)
    code = ("import backbeat.provider.profiles as p; p.JOB_TYPES = (*p.JOB_TYPES, 'add-kazoo'); "
            "from backbeat.api.cli import main; "
            "assert 'add-kazoo' in main.commands['enqueue'].params[0].type.choices; "
            "assert 'add-kazoo' in [q for q in main.commands['jobs'].params "
            "if q.name == 'job_type'][0].type.choices")
    _python_ok(code)


def _python_ok(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must exit 0."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


def test_demo_reads_terminal_states_and_job_types_from_their_sources():
    from backbeat.devstack import demo
    from backbeat.workers.states import TERMINAL

    assert demo.TERMINAL is TERMINAL
    assert [demo._kind(n) for n in range(2 * len(JOB_TYPES))] == list(JOB_TYPES) * 2
    assert set(demo._TYPE_PARAMS) == set(JOB_TYPES)
