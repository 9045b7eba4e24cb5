"""The status page's data on a real Redis: the picture (``workers/overview.py``) shows jobs by
state, the window against the rule, breaker, pause, the latest failures and paid duplicates;
the event stream (``api/routes_status.py``) sends transitions in order, goes on after a
reconnect from ``Last-Event-ID``, says when Redis is gone, and ends by itself."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest

from backbeat.api.routes_status import event_stream
from backbeat.api.web import create_app
from backbeat.config.settings import Settings
from backbeat.provider.profiles import Outcome
from backbeat.workers.overview import HISTORY_S, overview, window_history
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState

PREFIX = "sst"
TOKEN = {"Authorization": "Bearer producer-token-1"}


@pytest.fixture
def rt(redis) -> Runtime:
    for key in redis.scan_iter(f"{PREFIX}:*", count=1000):
        redis.delete(key)
    return Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": PREFIX}))


def _job(rt: Runtime, title: str) -> str:
    job_id = uuid.uuid4().hex
    rt.store.create(job_id, "add-vocals", {"title": title})
    return job_id


def _events(chunks: list[str]) -> list[tuple[str | None, str, Any]]:
    """(id, event, data) of each server-sent event in ``chunks``."""
    out = []
    for chunk in chunks:
        fields = dict(line.split(": ", 1) for line in chunk.strip().splitlines()
                      if ": " in line)
        if "event" in fields:
            out.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return out


def test_the_picture_shows_states_window_breaker_pause_failures_and_duplicates(rt):
    rt.submit_limiter.pause("picture test")
    ok, failed = _job(rt, "kept"), _job(rt, "broken")
    rt.store.transition(failed, JobState.SUBMITTING, "claimed")
    rt.store.transition(failed, JobState.FAILED, "rejected",
                        fields={"error_code": "400", "error_message": "bad upload url"})
    rt.store.transition(ok, JobState.SUBMITTING, "claimed")
    rt.store.transition(ok, JobState.SUBMITTED, "accepted", fields={"upstream_task_id": "t-1"})
    assert rt.store.add_duplicate(ok, "t-2")
    grant = rt.submit_limiter.try_acquire()  # paused: refused, nothing counted
    assert not grant.granted

    pic = overview(rt)
    assert pic["jobs"]["failed"] == 1 and pic["jobs"]["submitted"] == 1
    assert pic["pause"] == {**pic["pause"], "paused": True, "reason": "picture test"}
    assert [f["id"] for f in pic["failures"]] == [failed]
    assert pic["failures"][0]["error"] == {"code": 400, "message": "bad upload url"}
    assert pic["duplicates"]["total"] == 1
    assert [(d["id"], d["upstream_task_id"], d["duplicate_task_ids"])
            for d in pic["duplicates"]["recent"]] == [(ok, "t-1", ["t-2"])]
    assert pic["rule"]["limit"] == rt.submit_limiter.rate.limit
    assert pic["window_calls"] == 0 and pic["breaker"]["state"] == "closed"

    rt.submit_limiter.resume()
    grants = [rt.submit_limiter.acquire(30) for _ in range(3)]
    assert all(g.granted for g in grants)
    rt.submit_limiter.report(Outcome.MAINTENANCE, grants[0])
    pic = overview(rt)
    assert pic["window_calls"] == 3
    assert pic["breaker"]["state"] == "open" and pic["breaker"]["trips"] == 1
    assert pic["calls"].get("maintenance") == 1


def test_a_duplicate_seen_again_is_listed_once_newest_first(rt):
    first, second = _job(rt, "a"), _job(rt, "b")
    for job_id, task in ((first, "a-1"), (second, "b-1")):
        rt.store.transition(job_id, JobState.SUBMITTING, "claimed")
        rt.store.transition(job_id, JobState.SUBMITTED, "accepted",
                            fields={"upstream_task_id": task})
    rt.store.add_duplicate(first, "a-2")
    rt.store.add_duplicate(second, "b-2")
    rt.store.add_duplicate(first, "a-3")
    recent = overview(rt)["duplicates"]
    assert recent["total"] == 3
    assert [d["id"] for d in recent["recent"]] == [first, second]


def test_the_window_history_counts_each_claim_once_per_window(rt):
    # two claims a minute ago (written with their past ids: this prefix's stream is empty)
    old_ms = rt.store.now_ms() - 60_000
    for seq in range(2):
        rt.redis.xadd(rt.keys.events, {"job": "old", "from": "queued", "to": "submitting",
                                       "reason": "claimed", "t": old_ms}, id=f"{old_ms}-{seq}")
    jobs = [_job(rt, f"claimed {n}") for n in range(3)]
    for job_id in jobs:  # three create calls: each preceded by one claim
        rt.store.transition(job_id, JobState.SUBMITTING, "claimed")
    rt.store.transition(jobs[0], JobState.SUBMITTED, "accepted", fields={"upstream_task_id": "t"})
    hist = window_history(rt)
    assert (hist["limit"], hist["window_s"]) == (rt.submit_limiter.rate.limit, 10.0)
    points = hist["points"]
    assert len(points) in (HISTORY_S, HISTORY_S + 1)
    assert all(b[0] - a[0] == 1000 for a, b in zip(points, points[1:-1], strict=False))
    assert points[-1][0] == hist["t"]
    assert points[-1][1] == 3 and max(n for _, n in points) == 3
    at = dict(points)
    assert [n for t, n in points if old_ms <= t < old_ms + 10_000] == [2] * 10  # in its window
    assert all(n == 0 for t, n in points if t < old_ms or old_ms + 10_000 <= t < hist["t"]
               - 12_000), at
    events = _events(list(event_stream(rt, None, seconds=0.1, every_s=0.1)))
    assert events[0][1] == "history" and events[0][2]["points"][-1][1] == 3


def test_the_stream_sends_transitions_in_order_and_goes_on_from_last_event_id(rt):
    job = _job(rt, "streamed")
    chunks = list(event_stream(rt, None, seconds=0.3, every_s=0.1))
    assert chunks[0].startswith("retry:")
    events = _events(chunks)
    backfill = [(i, d) for i, e, d in events if e == "transition"]
    assert [(d["job"], d["to"]) for _, d in backfill] == [(job, "queued")]
    pictures = [d for _, e, d in events if e == "overview"]
    assert len(pictures) >= 2 and pictures[-1]["jobs"]["queued"] == 1

    rt.store.transition(job, JobState.SUBMITTING, "claimed")
    rt.store.transition(job, JobState.CANCELLED, "caller")  # not allowed: nothing sent
    rt.store.transition(job, JobState.SUBMITTED, "accepted", fields={"upstream_task_id": "t"})
    more = _events(list(event_stream(rt, backfill[-1][0], seconds=0.2, every_s=0.1)))
    assert [(d["from"], d["to"]) for _, e, d in more if e == "transition"] == [
        ("queued", "submitting"), ("submitting", "submitted")]


def test_the_stream_says_when_redis_is_gone_and_still_ends(redis):
    settings = Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": PREFIX,
                                  "BACKBEAT_REDIS_URL": "redis://127.0.0.1:1/0"})
    events = _events(list(event_stream(Runtime(settings), "0-0", seconds=0.3, every_s=0.1)))
    assert events and {e for _, e, _ in events} == {"unavailable"}


def test_http_stream_needs_the_token_and_ignores_a_bad_last_event_id(rt, monkeypatch):
    import backbeat.api.routes_status as routes

    monkeypatch.setattr(routes, "STREAM_S", 0.2)
    monkeypatch.setattr(routes, "PICTURE_EVERY_S", 0.1)
    app = create_app(rt.settings).test_client()
    _job(rt, "over http")
    assert app.get("/v1/status/stream").status_code == 401
    resp = app.get("/v1/status/stream", headers={**TOKEN, "Last-Event-ID": "x; DROP"})
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = _events(resp.get_data(as_text=True).split("\n\n"))
    assert any(e == "transition" for _, e, _ in events)  # a bad id: backfill, as a new stream
    page = app.get("/")
    assert page.status_code == 200 and b"/v1/status/stream" in page.data
    assert app.get("/v1/status", headers=TOKEN).get_json()["jobs"]["queued"] == 1


def test_a_process_serves_so_many_streams_and_frees_each_slot(rt, monkeypatch):
    import backbeat.api.routes_status as routes

    monkeypatch.setattr(routes, "MAX_STREAMS", 1)
    monkeypatch.setattr(routes, "STREAM_S", 0.2)
    app = create_app(rt.settings).test_client()
    first = app.get("/v1/status/stream", headers=TOKEN, buffered=False)  # not read yet
    assert first.status_code == 200
    busy = app.get("/v1/status/stream", headers=TOKEN)
    assert busy.status_code == 503 and busy.headers["Retry-After"]
    assert "GET /v1/status" in busy.get_json()["message"]
    assert app.get("/v1/status", headers=TOKEN).status_code == 200  # the fallback answers
    first.close()  # closed before it started: its slot is free again
    again = app.get("/v1/status/stream", headers=TOKEN)
    assert again.status_code == 200 and "event: overview" in again.get_data(as_text=True)
    assert app.get("/v1/status/stream", headers=TOKEN).status_code == 200  # read to the end
