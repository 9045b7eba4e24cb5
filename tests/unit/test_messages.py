"""A submit message written by backbeat (workers/messages.py) is the one Celery's ``send_task``
writes, key for key, and so is its task-sent event: same broker list for each priority, same
envelope, same headers, same event channel and fields; only the ids and clocks differ. Real
Redis, real kombu: send_task writes beside us and both are read back."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from backbeat.config.settings import Settings
from backbeat.workers import jobs
from backbeat.workers.dispatch import FRONT, NORMAL, celery_for, send_submit, submit_message
from backbeat.workers.runtime import Runtime

#: differ between any two messages (ids, tags, the Lamport clock, the time)
VOLATILE = {"id", "root_id", "correlation_id", "delivery_tag", "uuid", "clock", "timestamp"}


@pytest.fixture
def rt(redis):
    for key in redis.scan_iter("msg:*", count=1000):
        redis.delete(key)
    return Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": "msg"}))


def _shape(obj):
    """``obj`` with volatile values blanked and base64 bodies decoded (recursively)."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key == "body" and isinstance(value, str):
                value = json.loads(base64.b64decode(value))
            out[key] = "*" if key in VOLATILE else _shape(value)
        return out
    if isinstance(obj, list):
        return [_shape(v) for v in obj]
    return obj


def _pop_one(rt, key: str) -> dict:
    raw = rt.redis.rpop(key)
    assert raw is not None, f"no message in {key!r}"
    return json.loads(raw)


@pytest.mark.parametrize("front", [True, False])
def test_the_message_and_its_event_are_celerys_own(rt, front):
    app = celery_for(rt.settings)
    priority = FRONT if front else NORMAL
    message = submit_message(rt.settings, "job-1", front=front)
    assert message is not None
    listener = rt.redis.pubsub(ignore_subscribe_messages=True)
    listener.psubscribe("msg:celery:*")
    listener.get_message(timeout=1.0)

    app.send_task("backbeat.submit", args=["job-1"], queue="submit", priority=priority)
    send_submit(rt.settings, "job-1", front=front)

    index = 0 if front else 2  # kombu's priority steps 0, 3, 6, 9
    key = rt.keys.submit_queues[index]
    assert message.queue_key == key
    theirs, ours = _pop_one(rt, key), _pop_one(rt, key)
    assert rt.redis.llen(key) == 0
    assert _shape(ours) == _shape(theirs)
    assert ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"][
        "correlation_id"]
    assert ours["headers"]["id"] != theirs["headers"]["id"]

    events = []
    deadline = time.monotonic() + 10
    while len(events) < 2 and time.monotonic() < deadline:
        got = listener.get_message(timeout=1.0)
        if got:
            events.append((got["channel"], json.loads(got["data"])))
    listener.close()
    assert len(events) == 2, events
    (their_channel, their_event), (our_channel, our_event) = events
    assert our_channel == their_channel == message.channel
    assert _shape(our_event) == _shape(their_event)
    fields = json.loads(base64.b64decode(our_event["body"]))
    assert fields["type"] == "task-sent" and fields["uuid"] == ours["headers"]["id"]


def test_a_new_job_and_its_message_are_written_in_one_step(rt, monkeypatch):
    """create_job.lua writes the job's message and publishes its task-sent event itself: no
    send after it (sending is made to fail here), no outbox entry to repair."""
    from backbeat.workers import lanes

    def no_send(*_a, **_k):
        raise AssertionError("the message was sent after the job's creation")

    monkeypatch.setattr(lanes, "send_new", no_send)
    monkeypatch.setattr(lanes, "send_or_admit", no_send)
    listener = rt.redis.pubsub(ignore_subscribe_messages=True)
    listener.psubscribe("msg:celery:*")
    listener.get_message(timeout=1.0)
    job, created = jobs.enqueue(rt, {"type": "add-instrumental", "params": {
        "uploadUrl": "https://example.com/a.mp3", "title": "t", "tags": "rock",
        "negativeTags": "metal"}})
    assert created
    raw = rt.redis.lrange(rt.keys.submit_queue, 0, -1)
    assert len(raw) == 1
    body = json.loads(base64.b64decode(json.loads(raw[0])["body"]))
    assert body[0] == [job.id]
    assert rt.redis.zscore(rt.keys.outbox, job.id) is None
    event = None
    deadline = time.monotonic() + 10
    while event is None and time.monotonic() < deadline:
        event = listener.get_message(timeout=1.0)
    listener.close()
    assert event is not None, "no task-sent event"
    fields = json.loads(base64.b64decode(json.loads(event["data"])["body"]))
    assert fields["type"] == "task-sent" and fields["args"] == repr([job.id])


def test_celerys_publish_signals_fire_as_send_task_fires_them(rt):
    """A receiver of before_task_publish sees the message while it can still change it (a
    tracing header lands on the broker); after_task_publish follows the write; a new job's
    message is then sent after its creation (create_job.lua writes none: it might not be
    published), so each signal fires once per message actually published."""
    from celery import signals

    before, after = [], []

    def trace(sender=None, headers=None, body=None, **_):
        headers["x-trace"] = f"trace-{body[0][0]}"
        before.append(body[0][0])

    def done(sender=None, headers=None, body=None, **_):
        after.append((sender, body[0][0], headers["x-trace"]))

    signals.before_task_publish.connect(trace, weak=False)
    signals.after_task_publish.connect(done, weak=False)
    try:
        send_submit(rt.settings, "job-9", front=True)
        job, _ = jobs.enqueue(rt, {"type": "add-instrumental", "params": {
            "uploadUrl": "https://example.com/a.mp3", "title": "t", "tags": "rock",
            "negativeTags": "metal"}})
    finally:
        signals.before_task_publish.disconnect(trace)
        signals.after_task_publish.disconnect(done)
    assert before == ["job-9", job.id]
    assert after == [("backbeat.submit", "job-9", "trace-job-9"),
                     ("backbeat.submit", job.id, f"trace-{job.id}")]
    raw = [json.loads(m) for m in rt.redis.lrange(rt.keys.submit_queue, 0, -1)]
    assert sorted(m["headers"]["x-trace"] for m in raw) == sorted(
        ["trace-job-9", f"trace-{job.id}"])
    assert rt.redis.zscore(rt.keys.outbox, job.id) is None  # sent, and out of the outbox


@pytest.mark.parametrize("conf", [{"task_compression": "gzip"}, {"task_protocol": 1},
                                  {"event_serializer": "pickle"}, {"broker_url": "memory://"}])
def test_settings_it_does_not_reproduce_keep_send_task(conf):
    """Another transport (Sentinel's, memory) or Celery settings that change the message's
    shape: no composer, so send_submit goes through Celery's send_task."""
    from celery import Celery

    from backbeat.workers.messages import composer_for

    app = Celery("other", broker=conf.pop("broker_url", "redis://127.0.0.1:1/0"))
    app.conf.update({"task_serializer": "json", "event_serializer": "json", **conf})
    assert composer_for(app) is None


def test_a_message_sent_from_inside_a_task_names_it_as_parent(rt):
    """As send_task does: the running task is the new message's parent and its root."""
    from celery import Celery

    from backbeat.workers.messages import SubmitMessages

    app = celery_for(rt.settings)
    composer = SubmitMessages(app)
    other = Celery("parent-test")

    @other.task(name="parent.test", bind=True)
    def parent(self):
        return json.loads(composer.compose("job-2", FRONT).body)["headers"]

    headers = parent.apply(task_id="parent-1").get()
    assert (headers["parent_id"], headers["root_id"]) == ("parent-1", "parent-1")
    top = json.loads(composer.compose("job-3", FRONT).body)["headers"]
    assert top["parent_id"] is None and top["root_id"] == top["id"]
