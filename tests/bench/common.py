"""Shared parts of the benchmarks: the private stack (redis-server + simulator), worker fleets,
window arithmetic over the simulator's ledger, machine facts and Markdown tables.

Everything is loopback; every wait has a deadline; every process started here is stopped by
the ``with`` block that started it, on error too.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from backbeat.devstack.processes import (
    Proc,
    beat_argv,
    free_port,
    start_redis,
    venv_bin,
    wait_http,
    wait_until,
    worker_argv,
)
from backbeat.simulator.ledger import window_counts

ROOT = Path(__file__).resolve().parents[2]
#: bound for every process start / readiness wait
START_TIMEOUT_S = 120.0
#: the simulator's task timeline, fast (as in tests/conftest.py)
FAST_TIMELINE = {"text_after_s": 0.3, "first_after_s": 0.6, "complete_after_s": 0.9}

Log = Callable[[str], None]


def shell(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"


def machine_facts() -> dict[str, str]:
    """What the doc prints above every table."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": shell("nproc"),
        "python --version": shell(sys.executable, "--version"),
        "redis-server --version": shell("redis-server", "--version"),
        "packages": ", ".join(f"{n} {_version(n)}" for n in (
            "redis", "celery", "kombu", "limits", "pyrate-limiter")),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists() else "n/a",
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Section:
    """One benchmark's result, as the doc shows it."""

    key: str
    title: str
    goal: str
    body: str
    raw: list[str] = field(default_factory=list)
    met: bool | None = None
    #: PNG files for docs/ (file name -> bytes, ``plots.png(fig)``), written beside the doc
    #: with it and linked from ``body`` as ``![what it shows](<file name>)``
    images: dict[str, bytes] = field(default_factory=dict)


class SimProcess:
    """The simulator as its own process (``backbeat sim``): calls are stamped on arrival by a
    process the benchmark driver's own work cannot starve, as a real provider would."""

    def __init__(self, run_dir: Path, api_key: str, *more_keys: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        # several keys (an account pool): click splits a multiple option's variable on spaces;
        # keys travel in the environment, never on a command line
        env = {**os.environ, "BACKBEAT_API_KEY": " ".join((api_key, *more_keys))}
        self.proc = Proc.start("sim", [venv_bin("backbeat"), "sim", "--port", str(port),
                                       "--profile", "sunoapi", "--rate", "20/10s"],
                               env, run_dir)
        try:
            wait_http(f"{self.url}/__health", START_TIMEOUT_S)
            self.reset()
        except BaseException:
            self.stop()
            raise

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/__stats", timeout=30).json()

    def calls(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/__calls", timeout=30).json()

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        resp = requests.post(f"{self.url}/__faults", json=knobs, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def reset(self, **knobs: Any) -> None:
        """Empty ledger, default knobs, then ``knobs`` (callbacks off, fast timeline)."""
        requests.post(f"{self.url}/__reset", json={"faults": True},
                      timeout=10).raise_for_status()
        self.set_knobs(**{"callbacks_enabled": False, **FAST_TIMELINE, **knobs})

    def stop(self) -> None:
        self.proc.stop()


class Stack:
    """A private redis-server and the provider simulator, each its own process."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.api_key = f"sk-bench-{secrets.token_hex(8)}"
        self.secret = secrets.token_hex(16)
        self.redis_port = free_port()
        self.redis_proc: Proc | None = None
        self.sim: SimProcess | None = None

    def __enter__(self) -> Stack:
        try:
            self.redis_proc = start_redis(self.run_dir, self.redis_port)
            self.redis = Redis(port=self.redis_port, decode_responses=True)
            self.sim = SimProcess(self.run_dir, self.api_key)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sim is not None:
            self.sim.stop()
        if self.redis_proc is not None:
            self.redis_proc.stop()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self, prefix: str, **overrides: str) -> dict[str, str]:
        """The worker/beat/client environment (the shape of tests/conftest.py's TEST_ENV)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("BACKBEAT_")}
        return {**base,
                "BACKBEAT_REDIS_URL": self.redis_url,
                "BACKBEAT_PROVIDER": "sunoapi",
                "BACKBEAT_API_BASE_URL": self.sim.url,
                "BACKBEAT_API_KEY": self.api_key,
                # callbacks are disabled in the simulator: nothing listens here
                "BACKBEAT_CALLBACK_BASE_URL": f"http://127.0.0.1:{free_port()}",
                "BACKBEAT_SECRET": self.secret,
                "BACKBEAT_SUBMIT_RATE": "20/10s",
                "BACKBEAT_POLL_RATE": "20/1s",
                "BACKBEAT_POLL_INTERVAL": "0.5",
                "BACKBEAT_POLL_MIN_DELAY": "1",
                "BACKBEAT_POLL_MAX_DELAY": "3",
                "BACKBEAT_UNCERTAIN_GRACE": "30",
                "BACKBEAT_READ_TIMEOUT": "5",
                "BACKBEAT_MAX_ATTEMPTS": "3",
                "BACKBEAT_KEY_PREFIX": prefix,
                **overrides}

    def clear_prefix(self, prefix: str) -> None:
        for key in self.redis.scan_iter(f"{prefix}:*", count=1000):
            self.redis.delete(key)


class Fleet:
    """N celery workers (the Procfile's command line) and one beat; stopped all at once."""

    def __init__(self, env: dict[str, str], log_dir: Path, workers: int, concurrency: int,
                 beat: bool = True) -> None:
        self.env, self.log_dir = env, log_dir
        self.workers, self.concurrency, self.beat = workers, concurrency, beat
        self.procs: list[Proc] = []

    def __enter__(self) -> Fleet:
        try:
            prefix = self.env["BACKBEAT_KEY_PREFIX"]
            for n in range(self.workers):
                self.procs.append(Proc.start(f"worker{n}", worker_argv(
                    f"{prefix}{n}", self.concurrency), self.env, self.log_dir))
            if self.beat:
                self.procs.append(Proc.start("beat", beat_argv(
                    self.log_dir / "beat-schedule"), self.env, self.log_dir))
            for proc in self.procs:
                needle = "beat: Starting..." if proc.name == "beat" else "ready."
                proc.wait_for_log(needle, START_TIMEOUT_S)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """TERM every group, give them 3 s together, then KILL what is left."""
        for proc in self.procs:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(p.alive() for p in self.procs):
            time.sleep(0.1)
        for proc in self.procs:
            proc.stop(timeout_s=0.5)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    return wait_until(predicate, timeout_s, what, interval=0.05)


def enqueue_backlog(client: Any, count: int, tag: str) -> None:
    for n in range(count):
        client.enqueue("add-instrumental", {
            "uploadUrl": "https://example.com/v.mp3", "title": f"{tag}-{n}",
            "tags": "rock", "negativeTags": "metal"})


def over_limit(times: list[float], window_s: float, limit: int) -> int:
    """Arrivals that found ``limit`` arrivals already in the window before them (violations)."""
    return sum(1 for c in window_counts(times, window_s) if c > limit)


def per_window(times: list[float], t0: float, window_s: float, windows: int) -> list[int]:
    """Arrivals per consecutive (tumbling) window from ``t0``."""
    out = [0] * windows
    for t in times:
        k = int((t - t0) // window_s)
        if 0 <= k < windows:
            out[k] += 1
    return out
