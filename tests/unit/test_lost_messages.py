"""A queued job whose broker message was dropped (kombu pops a message before it records it as
unacked: a node or Redis dying in between loses it) is parked a minute later, so the pump sends
it again; a job whose message is anywhere is left alone. Real Redis, real kombu messages."""

import json
import os
import time

import pytest

from backbeat.config.settings import Settings
from backbeat.workers import housekeeping
from backbeat.workers.dispatch import send_submit
from backbeat.workers.runtime import Runtime

PARAMS = {"uploadUrl": "https://example.com/a.mp3", "title": "t", "tags": "rock",
          "negativeTags": "metal"}


@pytest.fixture
def rt(redis):
    for key in redis.scan_iter("lm:*", count=1000):
        redis.delete(key)
    return Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": "lm"}))


def _queued(rt, job_id: str, age_ms: int) -> None:
    rt.store.create(job_id, "add-instrumental", PARAMS)
    rt.redis.zrem(rt.keys.outbox, job_id)  # its message was sent (or so the enqueue believed)
    rt.redis.zadd(rt.keys.queued, {job_id: rt.store.now_ms() - age_ms}, xx=True)


def test_only_the_job_whose_message_is_nowhere_is_parked(rt):
    old = housekeeping.LOST_AFTER_MS + 1_000
    _queued(rt, "lost", old)
    _queued(rt, "waiting", old)
    send_submit(rt.settings, "waiting")
    _queued(rt, "delivered", old)
    send_submit(rt.settings, "delivered")
    raw = rt.redis.rpop(rt.keys.submit_queues[2])  # priority 6: a worker popped it...
    rt.redis.hset(rt.keys.unacked, "tag-1", json.dumps([json.loads(raw), "", "submit"]))
    _queued(rt, "leased", old)
    rt.redis.zadd(rt.keys.leases, {"leased": rt.store.now_ms() + 20_000})
    _queued(rt, "unsent", old)
    rt.redis.zadd(rt.keys.outbox, {"unsent": 1})
    _queued(rt, "young", 1_000)
    assert housekeeping.rescue_lost_messages(rt) == 1
    assert rt.redis.zrange(rt.keys.parked, 0, -1) == ["lost"]
    assert housekeeping.rescue_lost_messages(rt) == 0  # parked now: counted once


def test_a_long_broker_queue_is_not_read(rt, monkeypatch):
    monkeypatch.setattr(housekeeping, "BROKER_SCAN_MOST", 2)
    _queued(rt, "lost", housekeeping.LOST_AFTER_MS + 1_000)
    for n in range(3):
        send_submit(rt.settings, f"other-{n}")
    assert housekeeping.rescue_lost_messages(rt) == 0
    assert rt.redis.zcard(rt.keys.parked) == 0


def test_each_entry_is_examined_once_when_it_turns_old(rt, monkeypatch):
    monkeypatch.setattr(housekeeping, "LOST_AFTER_MS", 300)
    _queued(rt, "later", 0)
    assert housekeeping.rescue_lost_messages(rt) == 0  # too young yet
    time.sleep(0.5)
    assert housekeeping.rescue_lost_messages(rt) == 1
    rt.redis.zrem(rt.keys.parked, "later")  # (the pump woke it and its message went missing)
    assert housekeeping.rescue_lost_messages(rt) == 0  # behind the cursor: not read again


def test_the_broker_is_read_where_the_broker_is(redis):
    """BACKBEAT_BROKER_URL on another database: messages waiting there are found there."""
    for key in redis.scan_iter("lb:*", count=1000):
        redis.delete(key)
    store_url = os.environ["BACKBEAT_REDIS_URL"]
    rt = Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": "lb",
                                    "BACKBEAT_BROKER_URL": store_url.rsplit("/", 1)[0] + "/1"}))
    rt.broker_redis.delete(*rt.keys.submit_queues, rt.keys.unacked)
    _queued(rt, "waiting", housekeeping.LOST_AFTER_MS + 1_000)
    send_submit(rt.settings, "waiting")
    assert rt.redis.llen(rt.keys.submit_queues[2]) == 0 and rt.broker_redis.llen(
        rt.keys.submit_queues[2]) == 1
    assert housekeeping.rescue_lost_messages(rt) == 0
    rt.broker_redis.delete(*rt.keys.submit_queues)
