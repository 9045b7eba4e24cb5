"""Waiting well: the one backoff rule, and riding out a Redis restart inside a task."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import BusyLoadingError, ConnectionError, ReadOnlyError, TimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: wait n draws from [0, min(cap, base * 2**n)]."""

    base_s: float
    cap_s: float

    def delay_s(self, n: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** n))


#: between tries of a task step while Redis is unreachable (seconds)
REDIS_BACKOFF = Backoff(0.2, 5.0)

#: Redis errors that mean "not reachable right now", not "this command is wrong"
TRANSIENT_REDIS = (ConnectionError, TimeoutError, BusyLoadingError, ReadOnlyError)


def through_redis_outages(fn: Callable[[], T], budget_s: float) -> T:
    """Run ``fn``; while Redis is unreachable, wait (capped backoff, jitter) and run it again
    from the start, for at most ``budget_s``. ``fn`` must be safe to repeat: every step of a
    task re-reads the job and acts only on its current state.

    Warning: after the budget the last error is raised (Celery then leaves the message to the
    broker's redelivery if it cannot ack either)."""
    deadline, tries = time.monotonic() + budget_s, 0
    while True:
        try:
            return fn()
        except TRANSIENT_REDIS as exc:
            delay = REDIS_BACKOFF.delay_s(tries)
            tries += 1
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable (%s); retrying in %.1f s", type(exc).__name__, delay)
            time.sleep(delay)
