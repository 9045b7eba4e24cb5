"""The ``sim`` command: rate parsing, and a real process serving until SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from backbeat.simulator.cli import parse_rate


@pytest.mark.parametrize(("text", "expected"), [
    ("20/10s", (20, 10.0)), ("5/1s", (5, 1.0)), ("3/s", (3, 1.0)), ("100/1m", (100, 60.0)),
    ("10/500ms", (10, 0.5)), ("20/10", (20, 10.0)),
])
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "20", "x/10s", "0/10s", "20/0s", "20/10d"])
def test_parse_rate_rejects(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_process_serves_until_sigterm():
    env = dict(os.environ, BACKBEAT_API_KEY="never-printed", BACKBEAT_PROVIDER="kie")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backbeat.simulator", "--port", "0", "--rate", "5/1s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator (kie) listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        with requests.Session() as http:
            http.trust_env = False
            assert http.get(url + "/__health", timeout=10).json()["profile"] == "kie"
            knobs = http.get(url + "/__faults", timeout=10).json()
        assert knobs["rate_limit"] == 5 and knobs["rate_window_s"] == 1.0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
    assert "never-printed" not in line + out + err
