"""Peer: a Dramatiq actor paced by ``dramatiq.rate_limits.ConcurrentRateLimiter`` (limit 1).

A concurrent limiter bounds calls in progress, not calls per window; to respect "20 per 10 s"
with it a user holds a distributed mutex (limit 1, Dramatiq's own example) for at least
10 s / 20 = 0.5 s per call, measured from before the call: at most one call starts every
0.5 s fleet-wide. Refused (``RateLimitExceeded``), the message is retried with backoff (1 s ..
10 s), as for the window peer. ``ttl`` 35 s (the call's connect + read timeouts; the default
is 900 s): a holder that dies keeps the mutex until then.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.rate_limits import ConcurrentRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from peers import upstream

broker = RedisBroker(url=os.environ["PEER_BROKER_URL"])
dramatiq.set_broker(broker)
MUTEX = ConcurrentRateLimiter(RedisBackend(url=os.environ["PEER_BROKER_URL"]), "provider-create",
                              limit=1, ttl=35_000)
SPACING_S = 10 / 20


@dramatiq.actor(actor_name="generate", max_retries=100, min_backoff=1000, max_backoff=10000)
def generate(title: str) -> str:
    with MUTEX.acquire():
        started = time.monotonic()
        try:
            return upstream.create(title)
        finally:
            time.sleep(max(0.0, SPACING_S - (time.monotonic() - started)))
