"""docs/PROVIDER-CODES.md walked row by row: for both profiles, every code (and record-info
status) the table lists is answered by the simulator where the row says, a job runs through
real workers, and its outcome is the row's (``make test``: one row of each kind per place and
profile; ``make test-all``: every row). The table is read from the doc itself, so the doc
and the behaviour cannot drift apart.

Counts and states only, never durations (a shared, noisy machine).
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from backbeat.provider.profiles import get_profile
from backbeat.simulator import SimConfig, SimServer
from backbeat.workers.runtime import Runtime

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "PROVIDER-CODES.md"
#: the suite's conftest (its Fleet, test key and bounds), as pytest loaded it
CONFTEST = next(m for m in list(sys.modules.values())
                if getattr(m, "__file__", None) == str(ROOT / "tests" / "conftest.py"))
API_KEY, WAIT_S, Fleet, wait_until = (CONFTEST.API_KEY, CONFTEST.WAIT_S, CONFTEST.Fleet,
                                      CONFTEST.wait_until)
MAX_ATTEMPTS = 3
#: the simulator for every case: a fast timeline, no rule to trip over by accident
SIM_BASE = {"text_after_s": 0.3, "first_after_s": 0.6, "complete_after_s": 0.9,
            "callback_backoff_scale": 0.2, "rate_limit": 1000, "rate_window_s": 1.0,
            "poll_limit_per_s": 1000}
FLEET_ENV = {"BACKBEAT_SUBMIT_RATE": "100/1s", "BACKBEAT_SUBMIT_BURST": "10",
             "BACKBEAT_POLL_RATE": "50/1s", "BACKBEAT_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
             "BACKBEAT_BREAKER_BASE": "1", "BACKBEAT_BREAKER_CAP": "2",
             "BACKBEAT_THROTTLE_COOLDOWN": "0.3", "BACKBEAT_PAUSE_PROBE_INTERVAL": "600",
             "BACKBEAT_POLL_INTERVAL": "0.5", "BACKBEAT_POLL_MIN_DELAY": "1",
             "BACKBEAT_POLL_MAX_DELAY": "2"}
SECTIONS = {"At submit": "submit", "At record-info (": "record-info",
            "At record-info: the task's": "status", "In callbacks": "callback"}


def table_rows() -> list[tuple[str, str, str, str]]:
    """(place, profile, code or status, outcome cell) for every row of the doc's tables."""
    rows, place = [], None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            place = next((v for k, v in SECTIONS.items() if line[3:].startswith(k)), None)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if place is None or len(cells) < 4 or cells[0] in ("provider", "---"):
            continue
        profiles = ("kie", "sunoapi") if cells[0] == "both" else (cells[0],)
        for profile in profiles:
            for key in re.findall(r"`([A-Z_]+)`", cells[1]) or [cells[1]]:
                rows.append((place, profile, key, cells[-1]))
    return rows


ROWS = table_rows()


def test_the_table_lists_every_documented_code_of_both_providers():
    for profile in ("kie", "sunoapi"):
        p = get_profile(profile)
        submit = {int(k) for place, prof, k, _ in ROWS if place == "submit" and prof == profile}
        polled = {int(k) for place, prof, k, _ in ROWS
                  if place == "record-info" and prof == profile}
        called = {int(k) for place, prof, k, _ in ROWS if place == "callback" and prof == profile}
        assert submit == set(p.codes) and polled == set(p.codes) - {200}
        assert called == set(p.callback_codes)
    statuses = {k for place, _, k, _ in ROWS if place == "status"}
    assert len(statuses) == 8


class World:
    """One profile's simulator and fleet (worker, beat, web for callbacks), shared by its rows."""

    def __init__(self, profile: str, run_dir: Path, redis: Any) -> None:
        self.profile = get_profile(profile)
        self.sim = SimServer(SimConfig(profile=profile, api_key=API_KEY, **SIM_BASE)).start()
        prefix = f"pc{profile[:3]}"
        for key in redis.scan_iter(f"{prefix}:*", count=1000):
            redis.delete(key)
        self.fleet = Fleet(run_dir, prefix, {**FLEET_ENV, "BACKBEAT_PROVIDER": profile,
                                             "BACKBEAT_API_BASE_URL": self.sim.url})
        self.fleet.start(workers=1, concurrency=4, web=True)
        self.client = self.fleet.client
        self.rt = Runtime(self.fleet.settings)

    def fresh(self, **knobs: Any) -> None:
        requests.post(f"{self.sim.url}/__reset", json={"faults": True},
                      timeout=10).raise_for_status()
        if knobs:
            self.sim.set_knobs(**knobs)
        self.rt.submit_limiter.resume()

    def calls(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.sim.url}/__calls", timeout=10).json()

    def polls(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.sim.url}/__polls", timeout=10).json()

    def enqueue(self, title: str) -> str:
        params = {"uploadUrl": "https://example.com/v.mp3", "title": title, "tags": "rock",
                  "negativeTags": "metal"}
        return self.client.enqueue("add-instrumental", params)["id"]

    def end(self, job_id: str) -> dict[str, Any]:
        return self.client.wait(job_id, timeout=WAIT_S * 2)

    def reasons(self, job_id: str) -> list[str]:
        return [e["reason"] for e in self.rt.store.history(job_id)]

    def stop(self) -> None:
        self.fleet.stop()
        self.sim.stop()


@pytest.fixture(scope="module")
def worlds(redis_server, run_dir):
    from redis import Redis

    made: dict[str, World] = {}
    redis = Redis(port=CONFTEST.REDIS_PORT, decode_responses=True)

    def get(profile: str) -> World:
        if profile not in made:
            made[profile] = World(profile, run_dir, redis)
        return made[profile]

    yield get
    for world in made.values():
        world.stop()


def case_id(row: tuple[str, str, str, str]) -> str:
    return f"{row[1]}-{row[0]}-{row[2]}"


def walked(rows: list[tuple[str, str, str, str]]) -> list[Any]:
    """Every row; past the first of each (place, profile, outcome) the rows are marked slow, so
    ``make test`` walks one row of each kind and ``make test-all`` every row."""
    seen: set[tuple[str, str, str]] = set()
    params = []
    for row in rows:
        kind = (row[0], row[1], row[3])
        params.append(pytest.param(row, id=case_id(row),
                                   marks=[pytest.mark.slow] if kind in seen else []))
        seen.add(kind)
    return params


@pytest.mark.parametrize("row", walked(ROWS))
def test_every_row_of_the_table(worlds, row):
    place, profile, key, outcome = row
    w = worlds(profile)
    title = f"{place}-{key}-{secrets.token_hex(3)}"
    expected = outcome.strip("`").split("`")[0] if outcome.startswith("`") else outcome
    if place == "submit":
        submit_case(w, int(key), expected, title)
    elif place == "record-info":
        record_info_case(w, int(key), expected, title)
    elif place == "status":
        status_case(w, key, expected, title)
    else:
        callback_case(w, int(key), expected, title)


def submit_case(w: World, code: int, expected: str, title: str) -> None:
    if code == 200:
        w.fresh()
        assert w.end(w.enqueue(title))["state"] == "succeeded"
        return
    w.fresh(create_code=code, callbacks_enabled=False)
    lim = w.rt.submit_limiter
    before = lim.state()
    job_id = w.enqueue(title)
    if expected in ("failed", "retried"):
        job = w.end(job_id)
        assert job["state"] == "failed", job
        assert job["error"] == {"code": code, "message": w.profile.codes[code]}
        sent = len([c for c in w.calls() if c["code"] == code])
        assert sent == (1 if expected == "failed" else MAX_ATTEMPTS)
        return
    forced = lambda: sum(c["code"] == code for c in w.calls())  # noqa: E731
    if expected == "throttled":
        wait_until(lambda: forced() >= 1 and lim.state()["throttles"] > before["throttles"])
    elif expected == "breaker":
        wait_until(lambda: lim.state()["breaker"]["trips"] > before["breaker"]["trips"])
    else:  # paused:<reason>
        reason = expected.split(":")[1]
        wait_until(lambda: lim.state()["pause"]["reason"] == reason
                   and w.rt.redis.zscore(w.rt.keys.parked, job_id) is not None)
        assert w.client.get(job_id)["state"] == "queued"
        calls = forced()
        time.sleep(1.5)
        assert forced() == calls  # paused: nobody calls the provider
        assert w.client.get(job_id)["state"] == "queued"
    w.sim.set_knobs(create_code=None)
    w.rt.submit_limiter.resume()
    job = w.end(job_id)
    assert job["state"] == "succeeded", job
    assert w.rt.store.get(job_id).int("failures") == 0


def record_info_case(w: World, code: int, expected: str, title: str) -> None:
    w.fresh(record_info_code=code, callbacks_enabled=False)
    job_id = w.enqueue(title)
    seen = lambda: sum(p["code"] == code for p in w.polls())  # noqa: E731
    if expected == "refused":
        job = w.end(job_id)
        assert job["state"] == "failed", job
        assert job["error"] == {"code": code, "message": w.profile.codes[code]}
        assert seen() == MAX_ATTEMPTS
        return
    assert expected == "polled again"
    wait_until(lambda: seen() >= 2)
    assert w.client.get(job_id)["state"] == "submitted"  # the job keeps its task
    outcome = w.profile.outcome_for(code).value
    if outcome in ("credits", "unauthorized", "not_found"):
        assert w.rt.submit_limiter.state()["pause"]["reason"] == outcome
    w.sim.set_knobs(record_info_code=None)
    w.rt.submit_limiter.resume()
    job = w.end(job_id)
    assert job["state"] == "succeeded", job
    assert len([c for c in w.calls() if c["code"] == 200]) == 1  # one task, never resubmitted


def status_case(w: World, status: str, expected: str, title: str) -> None:
    knobs: dict[str, Any] = {"callbacks_enabled": False}
    if status in ("CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED", "CALLBACK_EXCEPTION"):
        knobs.update(fail_rate=1.0, fail_status=status)
    if status == "SENSITIVE_WORD_ERROR":
        knobs.update(sensitive_words=["forbidden"])
        title = f"forbidden {title}"
    w.fresh(**knobs)
    if status == "GENERATE_AUDIO_FAILED":  # its errorCode decides (the profile's usual one)
        code = 501 if w.profile.name == "kie" else 400
        expected = "resubmitted" if w.profile.retryable_failure(code) else "failed"
    job_id = w.enqueue(title)
    job = w.end(job_id)
    if expected == "succeeded":
        assert job["state"] == "succeeded" and job["tracks"], job
        return
    assert job["state"] == "failed", job
    accepted = len([c for c in w.calls() if c["code"] == 200])
    if expected == "resubmitted":
        assert accepted == MAX_ATTEMPTS
        assert sum("resubmitting" in r for r in w.reasons(job_id)) == MAX_ATTEMPTS - 1
        assert len(w.rt.store.get(job_id).previous_task_ids) == MAX_ATTEMPTS - 1
    else:
        assert accepted == 1


def callback_case(w: World, code: int, expected: str, title: str) -> None:
    # polls answer 500 (polled again): only the callbacks can settle the job
    knobs: dict[str, Any] = {"record_info_code": 500}
    if code != 200:
        knobs.update(fail_rate=1.0, fail_code=code)
    w.fresh(**knobs)
    job_id = w.enqueue(title)
    job = w.end(job_id)
    accepted = len([c for c in w.calls() if c["code"] == 200])
    reasons = w.reasons(job_id)
    if expected == "succeeded":
        assert job["state"] == "succeeded" and job["tracks"], job
        assert any(r.startswith("callback: complete") for r in reasons), reasons
        return
    assert job["state"] == "failed", job
    assert job["error"]["code"] == code, job
    assert any(r.startswith("callback") for r in reasons), reasons
    if expected == "resubmitted":
        assert accepted == MAX_ATTEMPTS, reasons
        assert sum("resubmitting" in r for r in reasons) == MAX_ATTEMPTS - 1, reasons
        stored = w.rt.store.get(job_id)
        assert len(stored.previous_task_ids) == MAX_ATTEMPTS - 1
        assert job["upstream_task_id"] not in stored.previous_task_ids
    else:
        assert expected == "failed"
        assert accepted == 1 and not any("resubmitting" in r for r in reasons), reasons
