"""``backbeat.submit`` messages written as Redis commands of our own.

Celery's ``send_task`` costs about 0.85 ms of CPU per message on this machine (task message,
kombu producer, a fresh redis-py client per publish, one round trip for the message and one
for the ``task-sent`` event), against 36 us for one LPUSH. A submit message carries only the
job id, so :class:`SubmitMessages` composes it once per call in the exact shape that Celery
(task protocol 2, :meth:`celery.app.amqp.AMQP.as_task_v2`) and kombu's Redis transport write:
the JSON envelope LPUSHed onto the queue's list for its priority, and the ``task-sent`` event
PUBLISHed on the ``celeryev`` fanout channel, so workers consume it and Flower shows it as if
``send_task`` had sent it. The key and channel names come from kombu's own channel (global key
prefix, priority separator, fanout prefix with the db). The two commands then ride in a
pipeline of the caller's or inside create_job.lua (a new job and its message in one step).

Used only where kombu's Redis transport is the broker (``redis://``, ``rediss://``,
``unix://``): a Sentinel broker keeps Celery's ``send_task``. Celery's publish signals fire as
``send_task`` fires them: ``before_task_publish`` with the headers and body while a receiver
may still change them, ``after_task_publish`` once the message is written (:meth:`Message.
published`); with a receiver connected, a new job's message is not written by create_job.lua
(it might not be published at all), but sent after it (``has_publish_hooks``).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery, signals
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from redis import Redis
from redis.client import Pipeline

TASK = "backbeat.submit"
QUEUE = "submit"
EVENTS_EXCHANGE = "celeryev"
SENT_ROUTING_KEY = "task.sent"
PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")


def _dumps(obj: Any) -> str:
    # kombu's json.dumps: the standard separators
    return json.dumps(obj)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def has_publish_hooks() -> bool:
    """True when this process has a receiver of Celery's publish signals."""
    return bool(signals.before_task_publish.receivers or signals.after_task_publish.receivers)


@dataclass(frozen=True)
class Message:
    """One submit message: LPUSH ``body`` onto ``queue_key``; PUBLISH ``event`` on ``channel``
    (empty when sent events are off). ``hook``: (task body, headers) for after_task_publish
    when a receiver was connected as it was composed."""

    queue_key: str
    body: str
    channel: str
    event: str
    hook: tuple[Any, dict[str, Any]] | None = None

    def published(self) -> None:
        """Written: Celery's ``after_task_publish`` for its receivers, as send_task sends it."""
        if self.hook is not None and signals.after_task_publish.receivers:
            body, headers = self.hook
            signals.after_task_publish.send(sender=TASK, body=body, headers=headers,
                                            exchange="", routing_key=QUEUE)

    def push_on(self, pipe: Pipeline | Redis) -> None:
        pipe.lpush(self.queue_key, self.body)
        if self.event:
            pipe.publish(self.channel, self.event)

    def args(self) -> list[str]:
        """The three ARGV of a script that writes it (create_job.lua)."""
        return [self.body, self.channel, self.event]


class SubmitMessages:
    """Composes submit messages for one Celery app (its broker names read once from kombu)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            prefix = getattr(channel, "global_keyprefix", "")
            self.events_channel = prefix + channel._get_publish_topic(
                EVENTS_EXCHANGE, SENT_ROUTING_KEY)
            # a priority's list: kombu's step for it (Redis serves the lowest step first)
            self._keys = {p: prefix + channel._q_for_pri(QUEUE, channel.priority(p))
                          for p in range(10)}
        self.sent_event = bool(app.conf.task_send_sent_event)
        self.pid = os.getpid()
        self.hostname = anon_nodename()

    def queue_key(self, priority: int) -> str:
        """The broker list a message of ``priority`` goes to (kombu's priority steps)."""
        return self._keys[min(9, max(0, int(priority)))]

    def compose(self, job_id: str, priority: int) -> Message:
        """The message (and its task-sent event) for ``job_id`` at ``priority``."""
        if os.getpid() != self.pid:  # forked: the origin names this process
            self.pid, self.hostname = os.getpid(), anon_nodename()
        task_id = str(uuid.uuid4())
        argsrepr = repr([job_id])
        headers = {
            "lang": "py", "task": TASK, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": self.hostname,
            "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None,
            "stamps": {},
        }
        body = ([job_id], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                "chord": None})
        properties = {"correlation_id": task_id, "reply_to": self.app.thread_oid}
        hooked = has_publish_hooks()
        if hooked and signals.before_task_publish.receivers:
            signals.before_task_publish.send(
                sender=TASK, body=body, exchange="", routing_key=QUEUE, declare=[],
                headers=headers, properties=properties, retry_policy=None)
        envelope = {
            "body": _b64(_dumps(body)),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": priority,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        event = ""
        if self.sent_event:
            fields = {
                "hostname": self.hostname, "utcoffset": utcoffset(), "pid": self.pid,
                "clock": self.app.clock.forward(), "uuid": task_id, "root_id": task_id,
                "parent_id": None, "name": TASK, "args": argsrepr, "kwargs": "{}",
                "retries": 0, "eta": None, "expires": None, "queue": QUEUE, "exchange": "",
                "routing_key": QUEUE, "timestamp": time.time(), "type": "task-sent",
            }
            event = _dumps({
                "body": _b64(_dumps(fields)),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": {"hostname": self.hostname},
                "properties": {
                    "delivery_mode": 1,
                    "delivery_info": {"exchange": EVENTS_EXCHANGE,
                                      "routing_key": SENT_ROUTING_KEY},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            })
        return Message(self.queue_key(priority), _dumps(envelope), self.events_channel, event,
                       (body, headers) if hooked else None)


_composers: dict[int, SubmitMessages] = {}
_composers_lock = threading.Lock()


def composer_for(app: Celery, broker_url: str) -> SubmitMessages | None:
    """The app's composer; None when its broker is not a plain Redis URL (Sentinel)."""
    if not broker_url.startswith(PLAIN_SCHEMES):
        return None
    found = _composers.get(id(app))
    if found is None or found.app is not app:
        with _composers_lock:
            found = _composers.get(id(app))
            if found is None or found.app is not app:
                found = _composers[id(app)] = SubmitMessages(app)
    return found
