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

Used only where it writes what ``send_task`` would (``supported``): kombu's own Redis
transport (a Sentinel broker keeps ``send_task``), task protocol 2, JSON tasks and events
without compression, persistent delivery, events on ``celeryev``. A message sent from inside a
running task names it as parent and root, as ``send_task`` does. Celery's publish signals fire as
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
from kombu.transport.redis import Transport as RedisTransport
from redis import Redis
from redis.client import Pipeline

TASK = "backbeat.submit"
QUEUE = "submit"
EVENTS_EXCHANGE = "celeryev"
SENT_ROUTING_KEY = "task.sent"


def supported(app: Celery) -> bool:
    """True when the app's broker and settings give messages the shape SubmitMessages writes:
    kombu's own Redis transport (Sentinel's is a subclass: not it) and Celery's defaults for
    the message's form."""
    conf = app.conf
    if not (int(conf.task_protocol) == 2 and conf.task_serializer == "json"
            and not conf.task_compression and conf.event_serializer == "json"
            and conf.event_exchange == EVENTS_EXCHANGE
            and conf.task_default_delivery_mode in ("persistent", 2)
            and not conf.task_inherit_parent_priority):
        return False
    with app.connection_for_write() as conn:  # the transport's class: no I/O
        return type(conn.transport) is RedisTransport


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
    """Composes submit messages for one Celery app (its broker names read once from kombu);
    only for an app ``supported`` accepts."""

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
        root_id, parent_id = task_id, None
        parent = self.app.current_worker_task  # sent from inside a task: it is the parent
        if parent is not None and parent.request.id:
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        argsrepr = repr([job_id])
        headers = {
            "lang": "py", "task": TASK, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": root_id, "parent_id": parent_id,
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
                sender=TASK, body=body, exchange="", routing_key=QUEUE,
                declare=[self.app.amqp.queues[QUEUE]], headers=headers, properties=properties,
                retry_policy=dict(self.app.conf.task_publish_retry_policy or {}))
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
                "clock": self.app.clock.forward(), "uuid": task_id, "root_id": root_id,
                "parent_id": parent_id, "name": TASK, "args": argsrepr, "kwargs": "{}",
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


_composers: dict[int, tuple[Celery, SubmitMessages | None]] = {}
_composers_lock = threading.Lock()


def composer_for(app: Celery) -> SubmitMessages | None:
    """The app's composer; None when its messages must go through ``send_task`` (another
    transport, such as Sentinel's, or settings it does not reproduce: ``supported``)."""
    found = _composers.get(id(app))
    if found is None or found[0] is not app:
        with _composers_lock:
            found = _composers.get(id(app))
            if found is None or found[0] is not app:
                composer = SubmitMessages(app) if supported(app) else None
                found = _composers[id(app)] = (app, composer)
    return found[1]
