"""What the broker holds: the job ids of the ``backbeat.submit`` messages waiting in the submit
queue's lists or delivered and not acked yet (kombu's Redis transport, read as data)."""

from __future__ import annotations

import base64
import json
from typing import Any

from redis import Redis

from .keys import Keys

SUBMIT_TASK = "backbeat.submit"


def submit_job_ids(redis: Redis, keys: Keys, most: int) -> set[str] | None:
    """Every job id a submit message in the broker carries, waiting or unacked; None when more
    than ``most`` messages wait (reading them all would cost more than it is worth)."""
    lists = keys.submit_queues
    pipe = redis.pipeline(transaction=False)
    for name in lists:
        pipe.llen(name)
    if sum(pipe.execute()) > most:
        return None
    pipe = redis.pipeline(transaction=False)
    for name in lists:
        pipe.lrange(name, 0, -1)
    pipe.hvals(keys.unacked)
    *waiting, unacked = pipe.execute()
    found = {_job_id(json.loads(raw)) for messages in waiting for raw in messages}
    found |= {_job_id(json.loads(raw)[0]) for raw in unacked}
    found.discard(None)
    return found


def _job_id(message: Any) -> str | None:
    """The job id of a ``backbeat.submit`` message (kombu's JSON envelope, base64 body holding
    ``[args, kwargs, embed]``); None for any other message."""
    try:
        if message["headers"].get("task") != SUBMIT_TASK:
            return None
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return args[0] if args and isinstance(args[0], str) else None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
