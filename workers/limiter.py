"""The cluster-wide limiter: an exact sliding window shared by every worker through Redis.

A rule ``N/Ws`` promises never more than N calls in ANY W-second window at the provider, whatever
the number of processes and machines. Each bucket keeps a log of its last N grant times (server
clock) and grants only when the N-th newest is older than the window: one round trip, O(1).

Example::

    limiter = WindowLimiter(redis, Keys("bb"), "sunoapi-1a2b", "submit", RateSpec(20, 10_000))
    grant = limiter.acquire(max_wait_s=30)   # sleeps until its token time, at most 30 s
    if grant.granted: call_the_provider()

Warning: the window is widened by a small safety margin (``margin_ms``) so that jitter between
the grant and the request's arrival at the provider cannot put N+1 calls into one of its windows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from ..config.settings import RateSpec
from . import scripts
from .keys import Keys

#: smallest safety margin added to every window, in ms
MIN_MARGIN_MS = 50
#: safety margin as a share of the window (2% of 10 s = 200 ms)
MARGIN_SHARE = 0.02
#: random extra sleep after a refusal, in ms, so waiters do not wake in lockstep
WAKE_JITTER_MS = 5


@dataclass(frozen=True)
class Grant:
    """The limiter's answer: granted now, or not yet and how long to wait (seconds)."""

    granted: bool
    wait_s: float = 0.0
    #: the Redis server time of the answer, in ms
    at_ms: int = 0


def default_margin_ms(window_ms: int) -> int:
    return max(MIN_MARGIN_MS, int(window_ms * MARGIN_SHARE))


class WindowLimiter:
    """One bucket (provider account x purpose). Safe to share between threads."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        account: str,
        purpose: str,
        rate: RateSpec,
        burst: int = 1,
        margin_ms: int | None = None,
    ) -> None:
        self.rate = rate
        self.burst = max(1, min(burst, rate.limit))
        self.window_ms = rate.window_ms + (default_margin_ms(rate.window_ms)
                                           if margin_ms is None else margin_ms)
        self.log_key = keys.bucket_log(account, purpose)
        self._acquire = scripts.register(redis, "acquire_window")

    def try_acquire(self) -> Grant:
        """One round trip: take a token now, or learn how long until one may be free."""
        granted, wait_ms, now_ms = self._acquire(
            keys=[self.log_key], args=[self.rate.limit, self.window_ms, self.burst]
        )
        return Grant(granted == 1, int(wait_ms) / 1000, int(now_ms))

    def acquire(self, max_wait_s: float, sleep: Callable[[float], None] = time.sleep) -> Grant:
        """Sleep until a token is granted; give up (not granted) once waiting would pass
        ``max_wait_s`` in total, returning the wait still ahead."""
        waited = 0.0
        while True:
            grant = self.try_acquire()
            if grant.granted:
                return grant
            if waited + grant.wait_s > max_wait_s:
                return grant
            nap = grant.wait_s + random.uniform(0, WAKE_JITTER_MS) / 1000
            sleep(nap)
            waited += nap
