"""The per-process objects a worker, beat or web process needs, built once after fork."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from redis import Redis

from ..config.settings import Secret, Settings, get_settings
from ..provider.client import ProviderClient
from .keys import Keys, account_id
from .leases import Leases
from .limiter import Limiter, Policy
from .redis_conn import client
from .signing import resolve_secret
from .store import JobStore


@dataclass
class Runtime:
    """Settings plus the Redis-backed parts built from them (lazily, per process)."""

    settings: Settings

    @cached_property
    def redis(self) -> Redis:
        return client(self.settings.redis_url)

    @cached_property
    def broker_redis(self) -> Redis:
        """The broker's Redis (BACKBEAT_BROKER_URL), read as data (queue lengths, messages):
        the job store's client when both are the same URL."""
        if self.settings.broker_url == self.settings.redis_url:
            return self.redis
        return client(self.settings.broker_url)

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.settings.key_prefix)

    @cached_property
    def store(self) -> JobStore:
        retention_ms = int(self.settings.retention_days * 86_400_000)
        return JobStore(self.redis, self.keys, retention_ms=retention_ms, account=self.account)

    @cached_property
    def leases(self) -> Leases:
        return Leases(self.redis, self.keys)

    @cached_property
    def account(self) -> str:
        return account_id(self.settings.provider.name, self.settings.api_key.reveal())

    @cached_property
    def policy(self) -> Policy:
        return Policy.from_settings(self.settings)

    @cached_property
    def submit_limiter(self) -> Limiter:
        s = self.settings
        return Limiter(self.redis, self.keys, self.account, "submit", s.submit_rate,
                       self.policy, burst=s.submit_burst)

    @cached_property
    def poll_limiter(self) -> Limiter:
        """Polls share the breaker but not the credits pause (record-info costs nothing).

        With ``BACKBEAT_POLLS_SHARE_SUBMIT_WINDOW`` (a provider whose one N/W rule counts polls
        and submissions together), the poll bucket IS the submit bucket: every poll takes its
        grant from the submit log, so the submit window's proof (acquire.lua) holds for every
        call of either kind; polls keep ignoring the credits pause, and a throttled poll slows
        submissions too (one rule, one AIMD). ``BACKBEAT_POLL_RATE`` then does not apply."""
        s = self.settings
        if s.polls_share_submit_window:
            return Limiter(self.redis, self.keys, self.account, "submit", s.submit_rate,
                           self.policy, burst=s.submit_burst, respect_pause=False)
        return Limiter(self.redis, self.keys, self.account, "poll", s.poll_rate, self.policy,
                       burst=s.poll_rate.limit, respect_pause=False)

    @cached_property
    def provider(self) -> ProviderClient:
        s = self.settings
        return ProviderClient(s.provider, s.api_base_url, s.api_key,
                              connect_timeout_s=s.connect_timeout_s,
                              read_timeout_s=s.read_timeout_s)

    @cached_property
    def secret(self) -> Secret:
        return resolve_secret(self.settings, self.redis)


_current: tuple[int, Runtime] | None = None


def current() -> Runtime:
    """This process's Runtime (rebuilt after a fork, so no socket is shared across processes)."""
    global _current
    if _current is None or _current[0] != os.getpid():
        _current = (os.getpid(), Runtime(get_settings()))
    return _current[1]
