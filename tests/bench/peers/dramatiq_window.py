"""Peer: a Dramatiq actor under ``dramatiq.rate_limits.WindowRateLimiter`` (Redis backend).

``WindowRateLimiter(RedisBackend, key, limit=20, window=10)`` as Dramatiq's rate-limiting
docs show it: ``with LIMITER.acquire():`` around the call raises ``RateLimitExceeded`` when
the window is full, and the Retries middleware retries the message with exponential backoff;
a throttled answer (430) raises too and is retried the same way. The window is counted in
whole-second buckets (keys ``key@<unix second>``, the last 10 summed). Backoff tuned to the
rule (``min_backoff`` 1 s, ``max_backoff`` 10 s instead of the 15 s .. 7 days defaults) and
generous ``max_retries``. Dramatiq's Redis broker acks after the actor returns (a message a
dead worker held is requeued after the 60 s heartbeat timeout, at a maintenance pass).
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from peers import upstream

broker = RedisBroker(url=os.environ["PEER_BROKER_URL"])
dramatiq.set_broker(broker)
LIMITER = WindowRateLimiter(RedisBackend(url=os.environ["PEER_BROKER_URL"]), "provider-create",
                            limit=20, window=10)


@dramatiq.actor(actor_name="generate", max_retries=100, min_backoff=1000, max_backoff=10000)
def generate(title: str) -> str:
    with LIMITER.acquire():
        return upstream.create(title)
