"""Every Redis key backbeat owns, in one place, under the configurable prefix.

Job store (one hash per job, plus indexes; every index entry leaves when the job does):
    {p}:job:{id}            hash   the job record (see store.py for its fields); every value
                                   short, so Redis keeps it compact (a listpack)
    {p}:params:{id}         string the job's provider params, JSON (same lifetime as the record)
    {p}:hist:{id}           list   the job's transitions after ``created``, JSON, oldest first
                                   (capped; no key before the first one)
    {p}:idem:{key}          string "job_id|fingerprint" an idempotency key maps to
    {p}:events              stream one entry per state transition (capped)
    {p}:jobs                zset   job id -> ms created (listing; trimmed after retention)
    {p}:state:{state}       zset   job id -> ms it entered that state (listing, dead letters)
    {p}:outbox              zset   job id -> ms created, until its first message is sent
    {p}:deadline            zset   job id -> ms its deadline passes (non-terminal jobs)
    {p}:poll                zset   job id -> ms of its next record-info poll (leased when claimed)
    {p}:uncertain           zset   job id -> ms when its uncertain grace period ends
    {p}:parked              zset   job id -> ms when a parked queued job may be sent again
    {p}:notify              zset   job id -> ms its next webhook delivery attempt is due
    {p}:leases              zset   job id -> ms the lease of the worker node holding it ends
    {p}:lease-holders       hash   job id -> "<node> <broker delivery tag>" holding its message
    {p}:rescue-cursor       string ms up to which queued jobs were checked for a lost message
    {p}:lost-cursor         string the same, for the check against the broker's messages
    {p}:pump-lease          string the one pump filling the queue now (a short redis-py lock)
    {p}:lane:{producer}     zset   a producer's waiting jobs: id -> (9 - priority) * 1e13 + its
                                   admission's number (lanes.py: the pump serves lanes fairly)
    {p}:lane-seq            string the admissions' counter (first come, first served in a lane)
    {p}:lanes               set    the producers whose lane holds jobs
    {p}:lane-of             hash   job id -> its producer, while the job waits in a lane
    {p}:drr                 hash   producer -> deficit (deficit round robin), "~cursor" -> the
                                   lane served last, "~open" -> "1" while its quantum is granted
    {p}:quota:{producer}    zset   job id -> ms created, the producer's quota window (quota.lua)
    {p}:budget              hash   producer -> credits its jobs reserved (budget.lua)
    {p}:metrics:{name}      string counters (duplicate upstream tasks, ...)
    {p}:metrics:{name}:recent list the latest job ids behind a counter (duplicates)
    {p}:dev-secret          string the secret every dev process shares when BACKBEAT_SECRET is unset
    {p}:celery:*            Celery's broker keys (kombu ``global_keyprefix``)
Limiter (per provider account; every key of an account shares the hash tag ``{<acct>}``):
    {p}:lim:{<acct>}:<purpose>:log   zset grant id -> latest possible arrival in ms
    {p}:lim:{<acct>}:state           hash AIMD factors, cool-downs, breaker and pause state,
                                          <purpose>:calls:<outcome> answer counters (metrics),
                                          credits / credits:at / credits:grant (the last
                                          balance read, its time, its grant's time),
                                          credits:cost / credits:charged /
                                          credits:charged_at_read (the credit floor)
    {p}:lim:{<acct>}:credits:lease   string one credit read per interval, fleet-wide (SET NX PX)
"""

from __future__ import annotations

import hashlib

from kombu.transport.redis import PRIORITY_STEPS

from ..config.celery import broker_prefix
from .states import ORDER

#: how kombu's Redis transport names the list of a queue's priority step (``Channel.sep``)
KOMBU_PRIORITY_SEP = "\x06\x16"


class Keys:
    """Key builder for one prefix; ``Keys("bb").job("abc") == "bb:job:abc"``."""

    def __init__(self, prefix: str = "bb") -> None:
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def hist(self, job_id: str) -> str:
        return f"{self.prefix}:hist:{job_id}"

    def params(self, job_id: str) -> str:
        return f"{self.prefix}:params:{job_id}"

    def idem(self, idempotency_key: str) -> str:
        return f"{self.prefix}:idem:{idempotency_key}"

    def state(self, name: str) -> str:
        return f"{self.prefix}:state:{name}"

    @property
    def state_indexes(self) -> list[str]:
        return [self.state(name) for name in ORDER]

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def queued(self) -> str:
        return self.state("queued")

    @property
    def outbox(self) -> str:
        return f"{self.prefix}:outbox"

    @property
    def rescue_cursor(self) -> str:
        return f"{self.prefix}:rescue-cursor"

    @property
    def lost_cursor(self) -> str:
        return f"{self.prefix}:lost-cursor"

    @property
    def deadline(self) -> str:
        return f"{self.prefix}:deadline"

    @property
    def poll(self) -> str:
        return f"{self.prefix}:poll"

    @property
    def uncertain(self) -> str:
        return f"{self.prefix}:uncertain"

    @property
    def parked(self) -> str:
        return f"{self.prefix}:parked"

    @property
    def notify(self) -> str:
        return f"{self.prefix}:notify"

    @property
    def pump_lease(self) -> str:
        return f"{self.prefix}:pump-lease"

    def lane(self, producer: str) -> str:
        return f"{self.prefix}:lane:{producer}"

    @property
    def lane_prefix(self) -> str:
        return f"{self.prefix}:lane:"

    @property
    def lane_seq(self) -> str:
        return f"{self.prefix}:lane-seq"

    @property
    def lanes(self) -> str:
        return f"{self.prefix}:lanes"

    @property
    def lane_of(self) -> str:
        return f"{self.prefix}:lane-of"

    @property
    def drr(self) -> str:
        return f"{self.prefix}:drr"

    @property
    def budget(self) -> str:
        return f"{self.prefix}:budget"

    def quota(self, producer: str) -> str:
        return f"{self.prefix}:quota:{producer}"

    @property
    def job_prefix(self) -> str:
        return f"{self.prefix}:job:"

    @property
    def leases(self) -> str:
        return f"{self.prefix}:leases"

    @property
    def lease_holders(self) -> str:
        return f"{self.prefix}:lease-holders"

    def metric(self, name: str) -> str:
        return f"{self.prefix}:metrics:{name}"

    def recent(self, metric_key: str) -> str:
        """The latest job ids behind a counter, newest first (``_duplicate.lua`` keeps the
        duplicates' list, RECENT_DUPLICATES long)."""
        return f"{metric_key}:recent"

    def queue_lists(self, queue: str) -> list[str]:
        """Every broker list of a Celery queue: kombu keeps one per priority step (0, 3, 6, 9;
        ``queue\\x06\\x16<step>`` past 0) and pops them in that order."""
        base = f"{broker_prefix(self.prefix)}{queue}"
        return [base] + [f"{base}{KOMBU_PRIORITY_SEP}{step}" for step in PRIORITY_STEPS[1:]]

    @property
    def submit_queue(self) -> str:
        """The broker list of the ``submit`` queue's front of the line (priority 0: jobs the
        pump woke), served before the rest."""
        return self.submit_queues[0]

    @property
    def submit_queues(self) -> list[str]:
        """Every broker list of the ``submit`` queue (queue_lists)."""
        return self.queue_lists("submit")

    @property
    def unacked(self) -> str:
        """kombu's hash of delivered, not yet acked messages (delivery tag -> message)."""
        return f"{broker_prefix(self.prefix)}unacked"

    @property
    def dev_secret(self) -> str:
        return f"{self.prefix}:dev-secret"

    def limiter_base(self, account: str) -> str:
        """The hash-tagged base of one account's limiter keys (``account`` is anonymised)."""
        return f"{self.prefix}:lim:{{{account}}}"

    def credits_lease(self, account: str) -> str:
        """One credit balance read per interval, fleet-wide (tasks/credits.py)."""
        return f"{self.limiter_base(account)}:credits:lease"

    def bucket_log(self, account: str, purpose: str) -> str:
        return f"{self.limiter_base(account)}:{purpose}:log"

    def limiter_state(self, account: str) -> str:
        return f"{self.limiter_base(account)}:state"


def account_id(provider: str, api_key: str) -> str:
    """A stable, non-reversible name for one provider account (the key never enters Redis)."""
    digest = hashlib.sha256(f"{provider}\0{api_key}".encode()).hexdigest()[:12]
    return f"{provider}-{digest}"
