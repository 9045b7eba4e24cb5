"""``backbeat.credits``: read each account's credit balance, once per interval fleet-wide.

Beat sends the tick every ``BACKBEAT_CREDITS_INTERVAL`` seconds (0: never) on the ``reconcile``
queue (config/celery.py: it is a provider call, and ``housekeeping`` stays Redis-only). The
worker that takes it runs :func:`read_credits`:

1. the lease ``{p}:lim:{<account>}:credits:lease`` (``SET NX PX``, LEASE_SHARE of the interval):
   however many beats send ticks and however many workers take them, one read per lease; a
   tick that finds it held does nothing;
2. a grant from the account's poll bucket, waited for at most TOKEN_WAIT_S; none (window full,
   cool-down, breaker open): this round is skipped, the lease stays;
3. GET the profile's credit endpoint through ``Limiter.call``: the answer is reported like any
   call (a 455 opens the breaker, a throttle cuts the poll rate, a 401 pauses submissions) and
   counted in ``backbeat_provider_calls_total{purpose="poll"}`` (or ``"submit"`` when polls
   share the submit window);
   A 404 there is read as a transient failure (a gateway without the credit path must not
   pause submissions);
4. an accepted balance goes into the account's state hash in one script call, with the Redis
   time of the write: ``credits`` (the number) and ``credits:at`` (ms), plus ``credits:grant``
   (the grant's time), so a slow read never overwrites a newer one.

``limiter_status`` (``credits``) and the gauges ``backbeat_credits`` and
``backbeat_credits_age_seconds`` show them (workers/status.py).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

from ..provider.client import Answer
from ..provider.profiles import Outcome
from ..workers import runtime, scripts
from ..workers.accounts import Account
from ..workers.app import app
from ..workers.status import CREDITS_AT_FIELD, CREDITS_FIELD

log = logging.getLogger(__name__)

#: longest a read waits for a poll token, in seconds (none by then: the round is skipped)
TOKEN_WAIT_S = 1.0
#: the lease lasts this share of the interval: it lapses before the next tick, even one sent
#: a little early or taken from a busy queue a little late
LEASE_SHARE = 0.9
#: the state hash field of the grant time of the read stored last
GRANT_FIELD = "credits:grant"



@dataclass
class CreditRead:
    """What one tick did: ``reason`` is ``disabled``, ``unsupported`` (no credit endpoint),
    ``leased`` (another read holds the interval), ``no_token:<refusal>`` or the answer's
    outcome (``accepted`` with a balance)."""

    reason: str
    balance: float | int | None = None
    #: the Redis time the balance was stored at (ms), 0 when it was not
    at_ms: int = 0
    #: what the report did to the account (limiter Effect), "" when no call was made
    effect: str = ""


def lease_key(rt: runtime.Runtime, account: Account | None = None) -> str:
    """The one-read-per-interval lease, beside the account's other limiter keys."""
    return rt.keys.credits_lease((account or rt.primary).id)


def read_credits(rt: runtime.Runtime, account: Account | None = None) -> CreditRead:
    """One round for ``account`` (the first when None): lease, poll token, the credit call,
    its report, the balance stored."""
    account = account or rt.primary
    interval_s = rt.settings.credits_interval_s
    if interval_s <= 0:
        return CreditRead("disabled")
    if not account.profile.credit_path:  # a profile without a documented credit endpoint
        return CreditRead("unsupported")
    lease_ms = max(1, int(interval_s * LEASE_SHARE * 1000))
    if not rt.redis.set(lease_key(rt, account), "1", nx=True, px=lease_ms):
        return CreditRead("leased")
    limiter = account.poll
    grant = limiter.acquire(max_wait_s=TOKEN_WAIT_S)
    if not grant.granted:
        log.info("credits: no poll token (%s) for account %s: read skipped this round",
                 grant.kind.value, account.name)
        return CreditRead(f"no_token:{grant.kind.value}")
    answer, effect = limiter.call(grant, _credits_answer, account)
    if answer.outcome is not Outcome.ACCEPTED:
        log.warning("credits: read for account %s failed: %s (%s) %s; limiter %s",
                    account.name, answer.outcome.value, answer.code, answer.message,
                    effect.value)
        return CreditRead(answer.outcome.value, effect=effect.value)
    # the answers this process holds (answers.py) are counted before the balance is stored,
    # so the cost learned from it sees every accepted submission this process knows of
    account.submit.flush()
    limiter.flush()
    at_ms = int(scripts.register(rt.redis, "store_credits")(
        keys=[rt.keys.limiter_state(account.id)],
        args=[repr(answer.data), grant.at_ms, CREDITS_FIELD, CREDITS_AT_FIELD, GRANT_FIELD,
              "" if account.spec.credit_cost is None else repr(account.spec.credit_cost)]) or 0)
    log.debug("credits: account %s balance %s", account.name, answer.data)
    return CreditRead(Outcome.ACCEPTED.value, answer.data, at_ms, effect.value)


def _credits_answer(account: Account) -> Answer:
    """The credit call's answer, a 404 read as a transient failure: a deployment whose gateway
    does not serve the credit path must not have its submissions paused by this side read (a
    404 on a create call still pauses them)."""
    answer = account.client.credits_answer()
    if answer.outcome is Outcome.NOT_FOUND:
        return replace(answer, outcome=Outcome.TRANSIENT)
    return answer


@app.task(name="backbeat.credits", acks_late=True, ignore_result=True)
def credits() -> dict:
    """Read each account's credit balance (at most once per BACKBEAT_CREDITS_INTERVAL per
    account, fleet-wide); one account's failure does not skip the others."""
    rt = runtime.current()
    out = {}
    for account in rt.accounts:
        try:
            out[account.name] = asdict(read_credits(rt, account))
        except Exception as exc:  # noqa: BLE001 - the next account is read all the same
            log.warning("credits: read for account %s failed: %s", account.name,
                        type(exc).__name__)
            out[account.name] = asdict(CreditRead(f"error:{type(exc).__name__}"))
    return out
