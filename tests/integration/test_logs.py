"""A real worker and beat with ``BACKBEAT_LOG_FORMAT=json`` run a job: their log files are JSON
lines, the worker's hold every transition of the job, and no log file holds the API key."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from backbeat.workers.keys import account_id

pytestmark = pytest.mark.integration

API_KEY = os.environ["BACKBEAT_API_KEY"]


def json_lines(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(the lines that are JSON objects, parsed; the other non-empty lines)."""
    parsed, other = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        (parsed if isinstance(obj, dict) else other).append(obj if isinstance(obj, dict) else line)
    return parsed, other


@pytest.mark.timeout(120)
def test_json_logs_of_a_real_worker_hold_the_jobs_transitions_and_never_the_key(
        fleet, payload, wait):
    f = fleet("logs", workers=1, concurrency=2, BACKBEAT_LOG_FORMAT="json")
    job = f.client.enqueue("add-instrumental", payload.instrumental("Logged"))
    assert f.client.wait(job["id"], timeout=60)["state"] == "succeeded"
    moves = [(e["from"], e["to"], e["reason"]) for e in f.client.history(job["id"])
             if e["from"]]  # the first entry is the creation, written by the producer
    assert moves[-1][1] == "succeeded" and len(moves) >= 3
    worker = f.worker(0)

    def logged() -> list[tuple[str, str, str]]:
        parsed, _ = json_lines(worker.log_text())
        return [(r["from"], r["to"], r["reason"]) for r in parsed
                if r.get("job") == job["id"] and "to" in r]

    # the worker writes its line just after the move; the client may see the move first
    wait(lambda: len(logged()) >= len(moves), timeout=15, what="the worker's transition lines")
    assert sorted(logged()) == sorted(moves)  # each move once, nothing else

    parsed, other = json_lines(worker.log_text())
    # every line of the worker is JSON: its banner is left out in json mode (workers/app.py)
    assert other == [], other[:5]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in parsed)
    assert any(r["logger"].startswith("celery") for r in parsed), "Celery's lines, same format"
    moved = [r for r in parsed if r.get("job") == job["id"] and "to" in r]
    account = account_id(f.settings.provider.name, API_KEY)
    assert all(r["account"] == account for r in moved)
    answers = [r for r in parsed if r.get("job") == job["id"] and "outcome" in r]
    assert answers and answers[-1]["outcome"] == "accepted" and answers[-1]["account"] == account

    beat_parsed, beat_other = json_lines(f.beat.log_text())
    # beat prints its banner with print() before it configures logging (celery/apps/beat.py,
    # start_scheduler; `celery -q` drops it, docs/OPERATIONS.md "Logs"): the lines before its
    # first log line; every line after that is JSON
    first_json = next(i for i, line in enumerate(f.beat.log_text().splitlines())
                      if line.startswith("{"))
    banner = f.beat.log_text().splitlines()[:first_json]
    assert banner and "celery beat v" in banner[0] and len(banner) <= 15, banner
    assert beat_other == [line for line in banner if line.strip()]
    assert any("Sending due task" in r["msg"] for r in beat_parsed)

    logs = sorted(f.run_dir.rglob("*.log"))
    assert worker.log_path in logs and f.beat.log_path in logs
    for path in logs:
        assert API_KEY not in path.read_text(errors="replace"), path
