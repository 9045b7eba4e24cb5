"""One Redis client per URL per process (redis-py pools are fork-safe)."""

from __future__ import annotations

from functools import cache

from redis import Redis
from redis.sentinel import Sentinel

from ..config.redis_urls import is_sentinel, parse_sentinel

#: the connection settings of every backbeat client, plain or behind Sentinel
_OPTIONS = {
    "decode_responses": True,
    "health_check_interval": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "retry_on_timeout": True,
}
#: a sentinel that hangs must not hang the question "where is the primary?"
_SENTINEL_SOCKET = {"socket_connect_timeout": 5, "socket_timeout": 5, "socket_keepalive": True}


def server_ms(redis: Redis) -> int:
    """The Redis server's clock in ms: the one clock every worker on every machine shares."""
    seconds, micros = redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


@cache
def client(url: str) -> Redis:
    """A decode_responses client for ``url``; shared within the process.

    For a Sentinel URL (``redis+sentinel://`` or ``sentinel://``, see config/redis_urls.py) the
    client is the sentinels' ``master_for`` client: each new connection asks the sentinels where
    the primary is, and connections to a demoted or dead primary are dropped, so a failover is
    followed without a restart (the commands in flight fail with a ConnectionError, which the
    callers ride out as they ride out a Redis restart)."""
    if not is_sentinel(url):
        return Redis.from_url(url, **_OPTIONS)
    parsed = parse_sentinel(url)
    sentinel_kwargs = dict(_SENTINEL_SOCKET)
    if parsed.sentinel_password:
        sentinel_kwargs["password"] = parsed.sentinel_password
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(parsed.master_name, db=parsed.db, username=parsed.username,
                               password=parsed.password, **_OPTIONS)
