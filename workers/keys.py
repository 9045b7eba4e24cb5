"""Every Redis key backbeat owns, in one place, under the configurable prefix.

Job store (one hash per job, plus indexes):
    {p}:job:{id}            hash   the job record (see store.py for its fields)
    {p}:idem:{key}          string job id an idempotency key maps to
    {p}:events              stream one entry per state transition (capped)
    {p}:queued              zset   job id -> ms when it (re)entered ``queued``
    {p}:poll                zset   job id -> ms of its next record-info poll (leased when claimed)
    {p}:uncertain           zset   job id -> ms when its uncertain grace period ends
    {p}:parked              zset   job id -> ms when a parked queued job may be sent again
Limiter (per provider account; every key of an account shares the hash tag ``{<acct>}``):
    {p}:lim:{<acct>}:<purpose>:log   list of grant times in ms, newest first (submit, poll)
    {p}:lim:{<acct>}:state           hash AIMD factors, cool-downs, breaker and pause state
"""

from __future__ import annotations

import hashlib


class Keys:
    """Key builder for one prefix; ``Keys("bb").job("abc") == "bb:job:abc"``."""

    def __init__(self, prefix: str = "bb") -> None:
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def idem(self, idempotency_key: str) -> str:
        return f"{self.prefix}:idem:{idempotency_key}"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def queued(self) -> str:
        return f"{self.prefix}:queued"

    @property
    def poll(self) -> str:
        return f"{self.prefix}:poll"

    @property
    def uncertain(self) -> str:
        return f"{self.prefix}:uncertain"

    @property
    def dev_secret(self) -> str:
        return f"{self.prefix}:dev-secret"

    @property
    def parked(self) -> str:
        return f"{self.prefix}:parked"

    def limiter_base(self, account: str) -> str:
        """The hash-tagged base of one account's limiter keys (``account`` is anonymised)."""
        return f"{self.prefix}:lim:{{{account}}}"

    def bucket_log(self, account: str, purpose: str) -> str:
        return f"{self.limiter_base(account)}:{purpose}:log"

    def limiter_state(self, account: str) -> str:
        return f"{self.limiter_base(account)}:state"


def account_id(provider: str, api_key: str) -> str:
    """A stable, non-reversible name for one provider account (the key never enters Redis)."""
    digest = hashlib.sha256(f"{provider}\0{api_key}".encode()).hexdigest()[:12]
    return f"{provider}-{digest}"
