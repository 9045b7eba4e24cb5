"""The chaos run in its short CI form: worker kills, a Redis SIGKILL + AOF restart, 10% 5xx,
5% accepted-then-timed-out calls, 3% dropped connections, 10% lost callbacks."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HARNESS = Path(__file__).with_name("chaos.py")


def run_harness(argv: list[str], bound_s: float) -> tuple[int, str]:
    """Run the harness; past ``bound_s`` send it SIGTERM, which stops every process it
    started (a SIGKILL would leave its workers, beat and Redis running)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=bound_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        out += f"\n[test] harness stopped with SIGTERM after {bound_s} s"
    return proc.returncode, out


# the harness's own deadline (--timeout) ends a stuck run with a report well inside the bounds
@pytest.mark.timeout(420)
def test_short_chaos_run_loses_nothing_and_pays_once(tmp_path):
    report_path = tmp_path / "chaos.json"
    returncode, out = run_harness(
        [sys.executable, str(HARNESS), "--jobs", "150", "--kills", "4", "--redis-restarts", "1",
         "--timeout", "240", "--json", str(report_path)], bound_s=330)
    assert report_path.exists(), out[-6000:]
    report = json.loads(report_path.read_text())
    assert report["jobs_enqueued"] == 150
    assert report["lost"] == 0, report
    assert report["silent_duplicates"] == 0, report
    # appendfsync everysec: a job acknowledged in the last second before the Redis SIGKILL may
    # be gone; it is reported apart, and every other job must finish
    assert report["jobs_finished"] == 150 - report["missing_in_fsync_window"], report
    assert report["redis_restarts"] == 1
    assert sum(report["worker_kills"].values()) == 4
    faults = report["provider"]
    assert faults["server_errors"] > 0 and faults["timeouts_after_accept"] > 0
    assert report["max_calls_in_window"] <= report["rule"][0]
    assert returncode == 0, out[-3000:]
