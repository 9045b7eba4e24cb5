"""Peer: a Celery task guarded by ``limits`` (moving window in Redis, one key for the fleet).

``MovingWindowRateLimiter(RedisStorage)`` with "20 per 10 seconds" on one shared key: every
worker process takes its place in the same exact sliding window before calling. Refused, the
task is retried (``self.retry``) when the window's oldest entry leaves it (``reset_time`` of
``get_window_stats``) plus a little jitter, so the waiters do not all come back at once. A
throttled answer (430) is retried the same way. At-least-once settings: ``acks_late`` +
``reject_on_worker_lost``, prefetch 1.
"""

from __future__ import annotations

import os
import random
import time

from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from peers import upstream

app = upstream.celery_app("peer_celery_limits")

RULE = parse("20 per 10 seconds")
LIMITER = MovingWindowRateLimiter(RedisStorage(os.environ["PEER_BROKER_URL"]))
KEY = "provider-create"


def _until_room() -> float:
    stats = LIMITER.get_window_stats(RULE, KEY)
    return max(0.05, stats.reset_time - time.time()) + random.uniform(0, 0.5)


@app.task(name="peer.generate", bind=True, max_retries=None)
def generate(self, title: str) -> str:
    if not LIMITER.hit(RULE, KEY):
        raise self.retry(countdown=_until_room())
    try:
        return upstream.create(title)
    except upstream.Throttled as exc:
        raise self.retry(exc=exc, countdown=_until_room()) from None
