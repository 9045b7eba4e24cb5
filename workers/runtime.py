"""The per-process objects a worker, beat or web process needs, built once after fork."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from redis import Redis

from ..config.settings import Secret, Settings, get_settings
from ..provider.client import ProviderClient
from ..provider.profiles import ProviderProfile
from .accounts import Account
from .accounts import build as build_accounts
from .job import Job
from .keys import Keys
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
        # one account: its id names every transition's log line (several: the claim names it)
        return JobStore(self.redis, self.keys, retention_ms=retention_ms,
                        account=self.account if len(self.accounts) == 1 else "")

    @cached_property
    def leases(self) -> Leases:
        return Leases(self.redis, self.keys)

    @cached_property
    def policy(self) -> Policy:
        return Policy.from_settings(self.settings)

    @cached_property
    def accounts(self) -> tuple[Account, ...]:
        """Every provider account, in configured order (docs/DESIGN.md section 4)."""
        return build_accounts(self.settings, self.redis, self.keys, self.policy)

    @property
    def primary(self) -> Account:
        """The first account: the only one of a single-key deployment."""
        return self.accounts[0]

    def account_named(self, name: str | None) -> Account | None:
        """The account called ``name``; a job that names none (created before accounts were
        recorded) belongs to the first; None for a name no longer configured."""
        if not name:
            return self.primary
        return next((a for a in self.accounts if a.name == name), None)

    def profile_of(self, job: Job) -> ProviderProfile:
        """The provider profile that reads ``job``'s task: its account's (BACKBEAT_PROVIDER's
        when the account is no longer configured)."""
        account = self.account_named(job.get("account"))
        return account.profile if account is not None else self.settings.provider

    @property
    def account(self) -> str:
        """The first account's id (the limiter keys' name for it)."""
        return self.primary.id

    @property
    def submit_limiter(self) -> Limiter:
        """The first account's submit bucket (single-account callers and tests)."""
        return self.primary.submit

    @property
    def poll_limiter(self) -> Limiter:
        """The first account's poll bucket. Polls share the breaker but not the credits
        pause (record-info costs nothing).

        With ``BACKBEAT_POLLS_SHARE_SUBMIT_WINDOW`` (a provider whose one N/W rule counts polls
        and submissions together), the poll bucket IS the submit bucket: every poll takes its
        grant from the submit log, so the submit window's proof (acquire.lua) holds for every
        call of either kind; polls keep ignoring the credits pause, and a throttled poll slows
        submissions too (one rule, one AIMD). ``BACKBEAT_POLL_RATE`` then does not apply."""
        return self.primary.poll

    @property
    def provider(self) -> ProviderClient:
        """The first account's client."""
        return self.primary.client

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
