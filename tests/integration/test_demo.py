"""``backbeat demo`` (what ``make demo`` runs), as a user meets it: it runs its batch, leaves the
system running with the URLs to open, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from backbeat.devstack.processes import venv_bin, wait_until

pytestmark = pytest.mark.integration

#: generous: a shared, noisy machine starts seven processes and runs the batch
UP_S = 240
STATUS_PAGE = re.compile(r"status page\s+(http://127\.0\.0\.1:(\d+))/#token=(\w+)")


def _demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """Start the demo as `make demo` does (no BACKBEAT_* from the test session), its output
    in a file (read while it runs, never a full pipe)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBEAT_")}
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [venv_bin("backbeat"), "demo", "--jobs", "4", "--no-flower",
             "--run-dir", str(tmp_path / "run"), *args],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return proc, out


def _descendants(pid: int) -> set[int]:
    """The demo's children and everything in their process groups (each child leads its own:
    gunicorn's workers, Celery's pool processes)."""
    table = [tuple(map(int, row.split())) for row in subprocess.run(
        ["ps", "-eo", "pid=,ppid=,pgid="], capture_output=True, text=True,
        check=True).stdout.splitlines()]
    children = {p for p, ppid, _ in table if ppid == pid}
    return children | {p for p, _, pgid in table if pgid in children}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _none_left(pids: set[int], text: str) -> None:
    """Every process seen under the demo is gone (a few seconds for the last SIGKILLs)."""
    try:
        wait_until(lambda: not [pid for pid in pids if _alive(pid)], 10)
    except TimeoutError:
        left = subprocess.run(["ps", "-o", "pid,pgid,cmd", "-p",
                               ",".join(str(p) for p in pids if _alive(p))],
                              capture_output=True, text=True).stdout
        pytest.fail(f"still running after the demo exited:\n{left}\n{text}")


@pytest.fixture
def started() -> Iterator[tuple[list[subprocess.Popen], set[int]]]:
    """The demos a test starts and the processes seen under them: whatever a failing test
    leaves alive is killed afterwards (the assertions have read what survived by then)."""
    demos: list[subprocess.Popen] = []
    pids: set[int] = set()
    yield demos, pids
    for pid in {*pids, *(d.pid for d in demos if d.poll() is None)}:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for demo in demos:
        demo.wait(10)


# Ctrl-C in make test; SIGTERM and --exit (the same stop path, 10 s each) in make test-all
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM,
                                                             marks=pytest.mark.slow)],
                         ids=["ctrl-c", "sigterm"])
def test_demo_keeps_running_until_ctrl_c_then_stops_everything(tmp_path: Path, sig: int,
                                                                started):
    """Ctrl-C, or a supervisor's SIGTERM, after the batch: every process stopped, status 0."""
    demo, out = _demo(tmp_path)
    demos, pids = started
    demos.append(demo)
    found = wait_until(lambda: STATUS_PAGE.search(out.read_text())
                       or (demo.poll() is not None and f"exited: {out.read_text()}"),
                       UP_S, "the demo printed its status page URL")
    assert isinstance(found, re.Match), found
    web = found[1]
    text = out.read_text()
    assert "4/4 jobs succeeded" in text, text
    assert f"API          {web}/openapi.json" in text and "Ctrl-C stops everything" in text
    # the batch is over and the system is still up
    health = requests.get(f"{web}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["redis"] is True, health.text
    pids.update(_descendants(demo.pid))
    assert len(pids) >= 5, pids  # redis, sim, web (+ its workers), worker (+ pool), beat
    demo.send_signal(sig)
    status = demo.wait(90)
    text = out.read_text()
    assert status == 0, text
    assert re.search(r"^stopped beat, worker, web, sim, redis-\d+: nothing left running$",
                     text, re.M), text
    assert "provider key in any process log: no" in text and "Traceback" not in text, text
    _none_left(pids, text)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{web}/healthz", timeout=5)


@pytest.mark.slow
def test_demo_with_exit_stops_everything_after_the_batch(tmp_path: Path, started):
    demo, out = _demo(tmp_path, "--exit")
    demos, pids = started
    demos.append(demo)

    def finished() -> bool:
        if demo.poll() is None:
            pids.update(_descendants(demo.pid))  # seen while it runs
            return False
        return True

    wait_until(finished, UP_S, "the demo with --exit ended by itself")
    text = out.read_text()
    assert demo.returncode == 0, text
    assert "4/4 jobs succeeded" in text and "status page" not in text, text
    assert re.search(r"^stopped beat, worker, web, sim, redis-\d+: nothing left running$",
                     text, re.M), text
    assert len(pids) >= 5, pids
    _none_left(pids, text)
    web = re.search(r"API (http://127\.0\.0\.1:\d+)/openapi\.json", text)
    assert web, text
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{web[1]}/healthz", timeout=5)
