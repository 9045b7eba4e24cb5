"""Shared fixtures: a real redis-server, the simulator over HTTP, the web app, Celery workers.

The environment is fixed at import (ports chosen now) so that every process and every module
that reads ``BACKBEAT_*`` sees the same settings: the pytest process and its subprocesses alike.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from backbeat.devstack.processes import (
    Proc,
    beat_argv,
    free_port,
    start_redis,
    wait_http,
    web_argv,
    worker_argv,
)
from backbeat.devstack.processes import (
    wait_until as _wait_until,
)
from backbeat.simulator.ledger import max_in_window

#: generous bound for every wait in integration tests (the machine is shared and noisy)
WAIT_S = 90.0

REDIS_PORT, SIM_PORT, WEB_PORT = free_port(), free_port(), free_port()
API_KEY = f"sk-test-{secrets.token_hex(12)}"
TEST_ENV = {
    "BACKBEAT_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
    "BACKBEAT_PROVIDER": "sunoapi",
    "BACKBEAT_API_BASE_URL": f"http://127.0.0.1:{SIM_PORT}",
    "BACKBEAT_API_KEY": API_KEY,
    "BACKBEAT_CALLBACK_BASE_URL": f"http://127.0.0.1:{WEB_PORT}",
    "BACKBEAT_SECRET": secrets.token_hex(16),
    "BACKBEAT_API_TOKENS": "producer-token-1,producer-token-2",
    "BACKBEAT_SUBMIT_RATE": "20/10s",
    "BACKBEAT_POLL_RATE": "20/1s",
    "BACKBEAT_POLL_INTERVAL": "0.5",
    "BACKBEAT_POLL_MIN_DELAY": "1",
    "BACKBEAT_POLL_MAX_DELAY": "3",
    "BACKBEAT_UNCERTAIN_GRACE": "4",
    "BACKBEAT_READ_TIMEOUT": "3",
    "BACKBEAT_MAX_ATTEMPTS": "3",
    # no credit reads in the suite's fleets (their own tests set an interval): a read is a poll
    # call the exact poll counts of test_metrics_run.py would see
    "BACKBEAT_CREDITS_INTERVAL": "0",
}
os.environ.update(TEST_ENV)
#: the variables a deployment must set to reach its Redis, provider and gateway: a fleet given
#: only these runs on the shipped defaults for every timeout, rate and delay
CONNECTION_VARS = ("BACKBEAT_REDIS_URL", "BACKBEAT_PROVIDER", "BACKBEAT_API_BASE_URL",
                   "BACKBEAT_API_KEY", "BACKBEAT_CALLBACK_BASE_URL", "BACKBEAT_SECRET",
                   "BACKBEAT_API_TOKENS")

from backbeat.config.settings import Settings, get_settings  # noqa: E402

get_settings.cache_clear()


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "") -> Any:
    """Poll ``predicate`` until truthy (TimeoutError after ``timeout`` seconds)."""
    return _wait_until(predicate, timeout, what)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this session's processes write their logs."""
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="session")
def redis_server(run_dir: Path) -> Iterator[Proc]:
    """A private redis-server on a free loopback port (fails in CI when missing)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server not installed")
    proc = start_redis(run_dir, REDIS_PORT)
    yield proc
    proc.stop()


@pytest.fixture
def redis(redis_server: Proc):
    """A client on the test Redis with backbeat's own keys removed (Celery's are kept)."""
    from redis import Redis

    from backbeat.workers.answers import FLUSHER

    FLUSHER.flush_all()  # answers an earlier test's limiters still hold: sent, then removed
    client = Redis(port=REDIS_PORT, decode_responses=True)
    for key in client.scan_iter("bb:*", count=1000):
        if not key.startswith("bb:celery:"):
            client.delete(key)
    return client


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def sim_server() -> Iterator[Any]:
    """The provider simulator (sunoapi profile) on SIM_PORT, fast timeline."""
    from backbeat.simulator import SimConfig, SimServer

    server = SimServer(SimConfig(profile="sunoapi", port=SIM_PORT, api_key=API_KEY,
                                 text_after_s=0.3, first_after_s=0.6, complete_after_s=0.9,
                                 callback_backoff_scale=0.2)).start()
    yield server
    server.stop()


FAST_TIMELINE = {"text_after_s": 0.3, "first_after_s": 0.6, "complete_after_s": 0.9}


@pytest.fixture
def sim(sim_server: Any) -> Any:
    """The simulator with an empty ledger and default knobs (fast timeline)."""
    requests.post(f"{sim_server.url}/__reset", json={"faults": True}, timeout=10).raise_for_status()
    sim_server.set_knobs(**FAST_TIMELINE, callback_backoff_scale=0.2)
    return sim_server


@pytest.fixture(scope="session")
def web_server(redis_server: Proc) -> Iterator[str]:
    """The web app served over real HTTP on WEB_PORT (werkzeug, threaded)."""
    from werkzeug.serving import make_server

    from backbeat.api.web import create_app

    server = make_server("127.0.0.1", WEB_PORT, create_app(Settings.from_env()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{WEB_PORT}"
    server.shutdown()


@pytest.fixture(scope="session")
def celery_worker_proc(redis_server: Proc, run_dir: Path) -> Iterator[Proc]:
    """A real Celery worker (the Procfile's command line) consuming every queue."""
    proc = Proc.start("worker", worker_argv("t1", concurrency=4), dict(os.environ), run_dir)
    proc.wait_for_log("ready.", WAIT_S)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def beat_proc(redis_server: Proc, run_dir: Path) -> Iterator[Proc]:
    """A real Celery beat sending ``backbeat.reconcile`` every BACKBEAT_POLL_INTERVAL."""
    proc = Proc.start("beat", beat_argv(run_dir / "beat-schedule"), dict(os.environ), run_dir)
    proc.wait_for_log("beat: Starting...", WAIT_S)
    yield proc
    proc.stop()


@pytest.fixture
def stack(redis, sim, web_server, celery_worker_proc, beat_proc) -> dict[str, Any]:
    """Everything running: Redis, simulator, web, worker, beat."""
    return {"redis": redis, "sim": sim, "web": web_server, "worker": celery_worker_proc,
            "beat": beat_proc}


def instrumental(title: str = "Night drive", **extra: Any) -> dict[str, Any]:
    return {"uploadUrl": "https://example.com/vocals.mp3", "title": title,
            "tags": "synthwave, warm", "negativeTags": "metal", **extra}


def vocals(title: str = "City lights", **extra: Any) -> dict[str, Any]:
    return {"uploadUrl": "https://example.com/backing.mp3", "title": title,
            "prompt": "[Verse] neon hum", "style": "Jazz", "negativeTags": "screaming", **extra}


@pytest.fixture
def wait() -> Callable[..., Any]:
    """``wait(predicate, timeout=WAIT_S, what="")``: poll until truthy or fail."""
    return wait_until


@pytest.fixture
def payload() -> Any:
    """Builders of valid provider params: ``payload.instrumental(title=...)``, ``.vocals``."""

    class Payloads:
        instrumental = staticmethod(instrumental)
        vocals = staticmethod(vocals)

    return Payloads


@pytest.fixture
def client(redis) -> Any:
    """The Python producer client on the test environment."""
    from backbeat.api.client import Client

    return Client(Settings.from_env())


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": "Bearer producer-token-1"}


class Fleet:
    """Several real worker processes plus a beat, isolated under their own key prefix."""

    def __init__(self, run_dir: Path, prefix: str, overrides: dict[str, str],
                 defaults: bool = False) -> None:
        from backbeat.api.client import Client

        base = {**os.environ, **TEST_ENV}
        if defaults:  # the suite's speed-ups removed: every other knob at its shipped default
            base = {k: v for k, v in base.items()
                    if not k.startswith("BACKBEAT_") or k in CONNECTION_VARS}
        self.env = {**base, "BACKBEAT_KEY_PREFIX": prefix, **overrides}
        self.settings = Settings.from_env(self.env)
        self.client = Client(self.settings)
        self.prefix, self.run_dir, self.procs = prefix, run_dir / prefix, []

    def start(self, workers: int, concurrency: int = 2, beat: bool = True,
              web: bool = False) -> Fleet:
        if web:  # its own callback receiver, so provider callbacks reach this fleet's jobs
            port = free_port()
            self.env["BACKBEAT_CALLBACK_BASE_URL"] = f"http://127.0.0.1:{port}"
            self.procs.append(Proc.start("web", web_argv(port, workers=1), self.env,
                                         self.run_dir))
            wait_http(f"http://127.0.0.1:{port}/healthz", WAIT_S)
        self.concurrency = concurrency
        for n in range(workers):
            self.add_worker(n, wait=False)
        for proc in self.procs:
            if proc.name.startswith("worker"):
                proc.wait_for_log("ready.", WAIT_S)
        if beat:
            self.beat = Proc.start("beat", beat_argv(self.run_dir / "beat-schedule"), self.env,
                                   self.run_dir)
            self.procs.append(self.beat)
            self.beat.wait_for_log("beat: Starting...", WAIT_S)
        return self

    def add_worker(self, n: int, wait: bool = True, name: str = "") -> Proc:
        """Start worker node ``n`` (the Procfile's worker line, node name ``<prefix><n>``
        unless ``name`` gives another, as a replacement pod's new hostname would)."""
        proc = Proc.start(f"worker{n}", worker_argv(name or f"{self.prefix}{n}",
                                                    self.concurrency), self.env, self.run_dir)
        self.procs.append(proc)
        if wait:
            proc.wait_for_log("ready.", WAIT_S)
        return proc

    def worker(self, n: int) -> Proc:
        """The latest process started as worker node ``n``."""
        return [p for p in self.procs if p.name == f"worker{n}"][-1]

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def logs(self) -> str:
        return "".join(p.log_text() for p in self.procs)

    def wait_all(self, ids: list[str], timeout: float = WAIT_S) -> list[dict[str, Any]]:
        return [self.client.wait(job_id, timeout=timeout) for job_id in ids]


@pytest.fixture
def fleet(redis, sim, run_dir: Path) -> Iterator[Callable[..., Fleet]]:
    """``fleet(prefix, workers=N, **env)``: worker processes + beat with their own settings;
    ``defaults=True`` drops the suite's speed-ups (shipped defaults but for the connection)."""
    started: list[Fleet] = []

    def make(prefix: str, workers: int = 2, concurrency: int = 2, beat: bool = True,
             web: bool = False, defaults: bool = False, **overrides: str) -> Fleet:
        for key in redis.scan_iter(f"{prefix}:*", count=1000):
            redis.delete(key)
        f = Fleet(run_dir, prefix, overrides, defaults)
        started.append(f)
        return f.start(workers, concurrency, beat, web)

    yield make
    for f in started:
        f.stop()


@pytest.fixture
def window_count() -> Callable[[list[dict[str, Any]], float], int]:
    """The most provider create calls (any answer) in any ``window_s`` window, exactly: the
    simulator's own counter (simulator/ledger.py), over the calls' arrival times."""
    return lambda calls, window_s: max_in_window([c["t"] for c in calls], window_s)
