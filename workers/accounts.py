"""The account pool: each provider account with its own buckets, breaker, pause and credits.

A job is submitted through whichever account can take it first (:func:`choose`: the accounts
tried in a weighted random order, each one round trip), and polled through the account that
accepted it (its name is on the job as ``account``; a task id belongs to its account). An
account in maintenance, paused or out of tokens never makes a job wait while another can take
it. The limiter keys are per account id (provider + a hash of the key), so two deployments
naming one key differently still share its window.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from redis import Redis

from ..config.accounts import AccountSpec
from ..config.settings import Settings
from ..provider.client import ProviderClient
from ..provider.profiles import ProviderProfile
from .keys import Keys, account_id
from .limiter import UNSLEPT, WAKE_JITTER_MS, Grant, Kind, Limiter, Policy


@dataclass
class Account:
    """One configured account and its limiter buckets and client (built once per process)."""

    spec: AccountSpec
    id: str
    submit: Limiter
    poll: Limiter
    settings: Settings

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def profile(self) -> ProviderProfile:
        return self.spec.provider

    @property
    def weight(self) -> float:
        return self.spec.weight

    @cached_property
    def client(self) -> ProviderClient:
        s = self.settings
        return ProviderClient(self.spec.provider, self.spec.base_url, self.spec.api_key,
                              connect_timeout_s=s.connect_timeout_s,
                              read_timeout_s=s.read_timeout_s)


def build(settings: Settings, redis: Redis, keys: Keys, policy: Policy) -> tuple[Account, ...]:
    """Every account of ``settings`` with its buckets (see Runtime.poll_limiter for the
    shared-window case: the poll bucket is then the submit bucket without the pause)."""
    out = []
    for spec in settings.account_specs:
        acct = account_id(spec.provider.name, spec.api_key.reveal())
        submit = Limiter(redis, keys, acct, "submit", spec.submit_rate, policy,
                         burst=spec.submit_burst, credit_floor=spec.credit_floor)
        if settings.polls_share_submit_window:
            poll = Limiter(redis, keys, acct, "submit", spec.submit_rate, policy,
                           burst=spec.submit_burst, respect_pause=False)
        else:
            poll = Limiter(redis, keys, acct, "poll", spec.poll_rate, policy,
                           burst=spec.poll_rate.limit, respect_pause=False)
        out.append(Account(spec, acct, submit, poll, settings))
    return tuple(out)


def weighted_order(accounts: Sequence[Account], rng: random.Random | None = None
                   ) -> list[Account]:
    """The accounts that take new submissions (weight > 0), in a random order where each
    comes first with probability weight / total (Efraimidis-Spirakis keys u ** (1 / w))."""
    draw = (rng or random).random
    live = [a for a in accounts if a.weight > 0]
    return sorted(live, key=lambda a: draw() ** (1.0 / a.weight), reverse=True)


@dataclass(frozen=True)
class Choice:
    """A grant on ``account``, or (account None) the refusal to act on: GATED kinds when every
    account is paused or its breaker open, else the shortest wait among them."""

    account: Account | None
    grant: Grant


def try_accounts(accounts: Sequence[Account]) -> Choice:
    """One round: the first account in weighted order that grants a submit token now."""
    refusals: list[Grant] = []
    for account in weighted_order(accounts):
        grant = account.submit.try_acquire()
        if grant.granted:
            return Choice(account, grant)
        refusals.append(grant)
    return Choice(None, soonest(refusals))


def soonest(refusals: Sequence[Grant]) -> Grant:
    """The refusal that ends first; a pause ends only by a probe or an operator, and the
    credit floor by a balance read, so either is the answer only when every account is
    stopped so."""
    waiting = [g for g in refusals if g.kind not in UNSLEPT]
    if not waiting:
        return refusals[0] if refusals else Grant(False, 0.0, 0, Kind.PAUSED)
    return min(waiting, key=lambda g: g.wait_s)


def choose(accounts: Sequence[Account], max_wait_s: float,
           sleep: Callable[[float], None]) -> Choice:
    """Sleep until some account grants (as Limiter.acquire does for one): return the refusal
    at once when every account is paused or at its credit floor, or when waiting would pass
    ``max_wait_s``."""
    waited = 0.0
    while True:
        choice = try_accounts(accounts)
        grant = choice.grant
        if grant.granted or grant.kind in UNSLEPT or waited + grant.wait_s > max_wait_s:
            return choice
        nap = grant.wait_s + random.uniform(0, WAKE_JITTER_MS) / 1000
        sleep(nap)
        waited += nap


def pick(accounts: Sequence[Account], name: str | None) -> tuple[Account, ...]:
    """The account called ``name`` (every account when None), for an operator's pause or
    resume; ValueError naming the configured accounts when there is none of that name."""
    if name is None:
        return tuple(accounts)
    found = tuple(a for a in accounts if a.name == name)
    if not found:
        raise ValueError(f"no account named {name!r} (configured: "
                         f"{', '.join(a.name for a in accounts)})")
    return found
