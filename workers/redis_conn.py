"""One Redis client per URL per process (redis-py pools are fork-safe)."""

from __future__ import annotations

from functools import cache

from redis import Redis


def server_ms(redis: Redis) -> int:
    """The Redis server's clock in ms: the one clock every worker on every machine shares."""
    seconds, micros = redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


@cache
def client(url: str) -> Redis:
    """A decode_responses client for ``url``; shared within the process."""
    return Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=5,
        socket_keepalive=True,
        retry_on_timeout=True,
    )
