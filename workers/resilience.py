"""Riding out a Redis restart inside a task instead of losing the delivery."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import BusyLoadingError, ConnectionError, ReadOnlyError, TimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Redis errors that mean "not reachable right now", not "this command is wrong"
TRANSIENT_REDIS = (ConnectionError, TimeoutError, BusyLoadingError, ReadOnlyError)


def through_redis_outages(fn: Callable[[], T], budget_s: float) -> T:
    """Run ``fn``; while Redis is unreachable, wait (capped backoff, jitter) and run it again
    from the start, for at most ``budget_s``. ``fn`` must be safe to repeat: every step of a
    task re-reads the job and acts only on its current state.

    Warning: after the budget the last error is raised (Celery then leaves the message to the
    broker's redelivery if it cannot ack either)."""
    deadline, delay = time.monotonic() + budget_s, 0.2
    while True:
        try:
            return fn()
        except TRANSIENT_REDIS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable (%s); retrying in %.1f s", type(exc).__name__, delay)
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 5.0)
