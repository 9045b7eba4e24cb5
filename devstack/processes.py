"""Starting and stopping the system's processes locally (the demo and the test fixtures)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from ..config.celery import QUEUES


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_bin(name: str) -> str:
    """The console script ``name`` beside this interpreter (falls back to PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


@dataclass
class Proc:
    """One child process in its own process group, its output in ``log_path``."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    #: where this run's output starts in ``log_path`` (a restarted process appends to it)
    log_offset: int = 0

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Proc:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        offset = log.tell()
        popen = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return cls(name, popen, log_path, offset)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self, own: bool = False) -> str:
        """The whole log, or with ``own`` the output of this run only (not of an earlier
        process that appended to the same log)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset if own else 0)
            return f.read().decode(errors="replace")

    def wait_for_log(self, needle: str, timeout_s: float = 60.0) -> None:
        """Wait until this run (not an earlier one appending to the same log) prints ``needle``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log_text(own=True):
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_text(own=True)[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {needle!r} not seen in {timeout_s} s")

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL what is left after ``timeout_s``."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


def start_redis(log_dir: Path, port: int, appendonly: bool = False,
                extra_args: Sequence[str] = ()) -> Proc:
    """A private redis-server on 127.0.0.1:port, ready when this returns; ``extra_args`` are
    added to its command line (e.g. ``("--replicaof", "127.0.0.1", "6379")``)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found: run deploy/ensure-redis.sh")
    data_dir = log_dir / f"redis-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "", "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", "everysec", *extra_args]
    proc = Proc.start(f"redis-{port}", argv, dict(os.environ), log_dir)
    _wait_ping(proc, port, "redis-server")
    return proc


def start_sentinel(log_dir: Path, port: int, master_name: str, primary_port: int,
                   quorum: int = 2, down_after_ms: int = 1500,
                   failover_timeout_ms: int = 6000) -> Proc:
    """A private ``redis-sentinel`` on 127.0.0.1:port monitoring the primary on
    127.0.0.1:primary_port as ``master_name``; ready (answering PING) when this returns. Its
    config file, which Sentinel rewrites as it learns the topology, is written into
    ``log_dir``."""
    exe = shutil.which("redis-sentinel")
    if exe is None:
        raise RuntimeError("redis-sentinel not found: run deploy/ensure-redis.sh")
    data_dir = log_dir / f"sentinel-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "sentinel.conf"
    conf.write_text("\n".join([
        f"port {port}",
        "bind 127.0.0.1",
        f"dir {data_dir}",
        f"sentinel monitor {master_name} 127.0.0.1 {primary_port} {quorum}",
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
        f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
        f"sentinel parallel-syncs {master_name} 1",
        "",
    ]))
    proc = Proc.start(f"sentinel-{port}", [exe, str(conf)], dict(os.environ), log_dir)
    _wait_ping(proc, port, "redis-sentinel")
    return proc


def _wait_ping(proc: Proc, port: int, what: str, timeout_s: float = 20.0) -> None:
    client = Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or not proc.alive():
                    proc.stop()  # never leave a half-started server behind
                    raise RuntimeError(f"{what} did not start:\n{proc.log_text()}") from None
                time.sleep(0.05)
    finally:
        client.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "",
               interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; TimeoutError
    (naming ``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout} s: {what or predicate}")
        time.sleep(interval)


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Wait until ``url`` answers any HTTP status."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in {timeout_s} s") from None
            time.sleep(0.1)


def celery_argv(*args: str) -> list[str]:
    return [venv_bin("celery"), "-A", "backbeat.workers.app", *args]


def worker_argv(name: str, concurrency: int = 4, loglevel: str = "INFO",
                queues: Sequence[str] = QUEUES) -> list[str]:
    """A worker exactly as the Procfile runs it (plus a node name): by default its ``worker``
    line, every queue; ``queues`` narrows it to a pool's (``("submit",)``: ``worker-submit``)."""
    return celery_argv("worker", "-Q", ",".join(queues), "--prefetch-multiplier", "1",
                       "--concurrency", str(concurrency), "-l", loglevel, "-n", f"{name}@%h",
                       "--without-mingle", "--without-gossip")


def flower_argv(port: int, address: str = "127.0.0.1") -> list[str]:
    """Flower as the Procfile runs it, on ``address:port``. Its login comes from the
    environment, as in production: ``FLOWER_BASIC_AUTH=user:password`` (Flower's own variable)."""
    return celery_argv("flower", f"--port={port}", f"--address={address}",
                       "--purge_offline_workers=300")


def read_procfile(path: Path) -> dict[str, str]:
    """Process name -> command line, as honcho reads a Procfile (``name: command`` lines)."""
    lines = (re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
             for line in path.read_text().splitlines())
    return {m[1]: m[2] for m in lines if m}


def procfile_command(procfile: Path, name: str, env: dict[str, str],
                     *extra: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run process ``name`` of ``procfile`` the way the container
    image does: through ``deploy/backbeat-run`` beside it (the line run by sh, exec'd), with
    this interpreter's scripts first on PATH and ``extra`` appended to the line."""
    if name not in read_procfile(procfile):
        raise KeyError(f"no process {name!r} in {procfile}")
    runner = procfile.parent / "deploy" / "backbeat-run"
    bin_dir = str(Path(sys.executable).parent)
    run_env = {**env, "PROCFILE": str(procfile),
               "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"}
    return ["/bin/sh", str(runner), name, *extra], run_env


def beat_argv(schedule_path: Path, loglevel: str = "INFO") -> list[str]:
    return celery_argv("beat", "-l", loglevel, "--schedule", str(schedule_path))


def web_argv(port: int, workers: int = 2) -> list[str]:
    return [venv_bin("gunicorn"), "backbeat.api.web:create_app()", "--bind",
            f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "gthread",
            "--threads", "8", "--access-logfile", "-"]
