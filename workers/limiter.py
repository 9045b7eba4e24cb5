"""The cluster-wide adaptive limiter: one polite client made of many workers on many machines.

Per provider account, in Redis, changed only in Lua on the Redis clock (docs/DESIGN.md section 4):

- an exact sliding window per purpose (``submit``, ``poll``): never more than N calls in ANY
  W-second window, whatever the number of processes (a log of the last N grant times);
- AIMD: a throttle answer cuts the effective N multiplicatively, once per shared cool-down
  (``Retry-After`` honoured as a minimum); successes add back about one call per window;
- a maintenance breaker (455): open, nobody calls; when the interval ends exactly one worker
  in the fleet holds the probe lease; success closes it, another 455 reopens it for longer;
- a credits/auth pause for submissions, lifted by a slow probe or by ``resume()``.

Example::

    lim = Limiter(redis, Keys("bb"), "sunoapi-1a2b", "submit", RateSpec(20, 10_000), policy)
    grant = lim.acquire(max_wait_s=30)        # sleeps until its token time, at most 30 s
    if grant.granted:
        answer = client.create(...)
        lim.report(answer.outcome, grant, answer.retry_after_s)

Warning: a grant counts as "arriving now" until its call is answered, and then until the
answer's time: the provider stamps the call somewhere in between, so no delay between grant and
arrival can put N+1 calls into one of the provider's windows. Every grant must therefore be
reported (``report``) or given back (``release``); one nobody reports (its worker died) stops
counting ``flight_ms`` after it was granted.

Lost state (Redis restarted without its data, or with an AOF that lost its last second, or a
failover to a replica that had not yet received the last grants): the log no longer holds calls
the provider has seen, so it must not grant a fresh window at once. Each account's state names
the Redis instance (``run_id``) that last decided its fence, and acquire.lua grants only on that
instance. Redis 7 neither replicates nor persists scripts (checked: SCRIPT LOAD on a primary is
not on its replica, nor on the replica once promoted; a restart from RDB or AOF has none; but a
demoted primary KEEPS its scripts, even through a full resync), so acquire is loaded per
instance (its first line names the instance's run_id) in one MULTI with fence.lua: a script
with that text exists on that instance only, and it grants only while the state names that
instance too; else (NOSCRIPT, or the reply "recheck") the caller runs fence.lua. fence.lua
fences the account (no grant in any of its buckets until one window after now) when the state
names another instance (restored, replicated, or a failback to a demoted primary), or when it
is empty while this process had seen another instance at the same address for the account
(data lost while the fleet lived). Every grant the lost data held was made before the new
instance took over, so a call answered before the fence began cannot share a provider window
with a grant made after it. A new deployment (empty state, no other instance seen) is not
fenced, nor is a SCRIPT FLUSH (the state names this instance). A fence refusal is kind
"fence", waited out like "window".

What it cannot see (left open): every process that talked to the old instance gone along with
the data, or a process that never did (a worker started at that moment) reaching the new
instance first, which then looks like a new deployment; a replica promoted before it received
even the account's first record, reached at a new address (no process remembers that address;
a Sentinel client keeps one address, its service); an instance promoted again after missing
ALL of another's term (its own old decision still stands); keys deleted or evicted on a live
instance (an operator's FLUSHALL; Redis must run with ``noeviction``); and a call still
unanswered when the data was lost whose answer comes after the fence began (the fence counts
from then, not from its arrival). Redis older than 7.0 replicated and persisted scripts.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from redis import Redis
from redis.exceptions import NoScriptError

from ..config.settings import RateSpec, Settings
from ..provider.profiles import Outcome
from . import scripts
from .answers import FLUSHER, Held
from .keys import Keys
from .redis_conn import server_ms

A = TypeVar("A")

log = logging.getLogger(__name__)

#: smallest safety margin added to every window, in ms (for the provider's clock vs Redis's)
MIN_MARGIN_MS = 20
#: safety margin as a share of the window (0.5% of 10 s = 50 ms)
MARGIN_SHARE = 0.005
#: random extra sleep after a refusal, in ms, so waiters do not wake in lockstep
WAKE_JITTER_MS = 5


class Kind(StrEnum):
    """How acquire.lua answered: a grant of some kind, or the reason for a refusal."""

    #: granted: a normal call
    OK = "ok"
    #: granted: the one call that tests an open breaker (half-open)
    PROBE = "probe"
    #: granted: the one call that tests an automatic pause (credits, key, path)
    PAUSE_PROBE = "pause_probe"
    #: refused: the account is paused (manual, credits, unauthorized, not_found)
    PAUSED = "paused"
    #: refused: the 455 breaker is open, or its probe is out
    BREAKER = "breaker"
    #: refused: a throttle's cool-down runs
    COOLDOWN = "cooldown"
    #: refused: the window is full until the N-th newest call is a window old
    WINDOW = "window"
    #: refused: the limiter state was lost or moved; no grant for one window
    FENCE = "fence"
    #: refused: the call would take the account's credits below its floor (acquire.lua):
    #: until a balance read shows more (tasks/credits.py)
    CREDITS = "credits"


class Signal(StrEnum):
    """What a provider answer tells report.lua about the account."""

    UP = "up"
    THROTTLED = "throttled"
    MAINTENANCE = "maintenance"
    PAUSED = "paused"
    DOWN = "down"
    #: a grant given back: its call was never made
    UNUSED = "unused"


class Effect(StrEnum):
    """What report.lua did to the account's shared state."""

    NONE = "none"
    #: the factor grew back toward 1 (additive increase)
    RAISED = "raised"
    #: a probe succeeded: the breaker closed
    CLOSED = "closed"
    #: a pause probe succeeded: submissions resumed
    RESUMED = "resumed"
    #: a throttle started a cool-down without cutting (already cut for this window)
    COOLDOWN = "cooldown"
    #: a throttle cut the factor (multiplicative decrease) and started a cool-down
    CUT = "cut"
    #: 455: the breaker opened
    OPENED = "opened"
    #: credits, key or path: the account paused with an automatic probe
    PAUSED = "paused"


#: refusals that never end by themselves within a short sleep: the caller should park the job
GATED = frozenset({Kind.PAUSED, Kind.BREAKER, Kind.CREDITS})
#: refusals no sleep ends (an operator, a probe or a balance read does): returned at once
UNSLEPT = frozenset({Kind.PAUSED, Kind.CREDITS})

#: (Redis address, account state key) -> run_id of the instance this process last decided or
#: learned the account's fence on: one that saw another instance where the state is now empty
#: knows it was lost (a dict: its reads and writes are atomic)
_SEEN: dict[tuple[Any, ...], str] = {}
#: rounds of fence.lua + acquire in one try_acquire while the instance keeps changing
FENCE_ROUNDS = 3

#: acquire.lua's kinds by name (a dict lookup: cheaper than the enum's constructor)
_KINDS = {k.value: k for k in Kind}
_SIGNALS = {
    Outcome.ACCEPTED: Signal.UP, Outcome.REJECTED: Signal.UP, Outcome.THROTTLED: Signal.THROTTLED,
    Outcome.MAINTENANCE: Signal.MAINTENANCE, Outcome.CREDITS: Signal.PAUSED,
    Outcome.UNAUTHORIZED: Signal.PAUSED, Outcome.NOT_FOUND: Signal.PAUSED,
    Outcome.TRANSIENT: Signal.DOWN, Outcome.UNCERTAIN: Signal.DOWN,
}


class Grant(NamedTuple):
    """The limiter's answer: granted (as ``kind``) now, or refused (``kind``) for ``wait_s``."""

    granted: bool
    wait_s: float = 0.0
    #: the Redis server time of the answer, in ms
    at_ms: int = 0
    #: ok, probe or pause_probe when granted; why not when refused (see Kind)
    kind: Kind = Kind.OK
    #: identifies the grant in the log, so ``report`` can record when the call was answered
    grant_id: str = ""


@dataclass(frozen=True)
class Policy:
    """How hard the fleet backs off; every duration in ms."""

    #: multiplicative cut on a throttle: 0.85, the one of 0.5 / 0.7 / 0.85 that met both
    #: <= 10% throttled and >= 85% of the real rule (docs/BENCHMARKS.md, "Adaptive": 3 runs
    #: each against a provider whose real rule is below the configured one)
    beta: float = 0.85
    cooldown_ms: int = 2_000
    breaker_base_ms: int = 15_000
    breaker_cap_ms: int = 300_000
    pause_probe_ms: int = 300_000
    probe_lease_ms: int = 45_000
    #: longest a granted call can stay unanswered (the client's own timeouts, plus slack): an
    #: unreported grant (its worker died mid-call) stops counting as in flight after that
    flight_ms: int = 45_000

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        # the longest one provider call can take (the client's timeouts), plus slack
        call_bound_ms = int((s.connect_timeout_s + s.read_timeout_s + 10) * 1000)
        return cls(
            beta=s.throttle_beta,
            cooldown_ms=int(s.throttle_cooldown_s * 1000),
            breaker_base_ms=int(s.breaker_base_s * 1000),
            breaker_cap_ms=int(s.breaker_cap_s * 1000),
            pause_probe_ms=int(s.pause_probe_interval_s * 1000),
            probe_lease_ms=call_bound_ms,
            flight_ms=call_bound_ms,
        )


class Gate(NamedTuple):
    """The account's gates as the pump reads them (two commands, whatever the backlog)."""

    #: paused or breaker open, and no probe due: nothing may be sent
    closed: bool
    #: a pause or breaker probe is due: one call may go
    probe_due: bool
    #: the bucket's effective limit now (see effective_limit)
    effective_limit: int


#: the state hash fields of the credit floor: the last balance read, the cost of one accepted
#: submission, accepted submissions counted (report.lua) and their count at the read
CREDIT_FIELDS = ("credits", "credits:cost", "credits:charged", "credits:charged_at_read")

#: an answer counter in the account's state hash, ``<purpose>:calls:<outcome>`` (report.lua)
CALLS_FIELD = re.compile(r"^(?P<purpose>[a-z_]+):calls:(?P<outcome>[a-z_]+)$")


def call_counts(raw: dict[str, str]) -> dict[tuple[str, str], int]:
    """The answer counters of an account's state hash ``raw``: (purpose, outcome) -> calls."""
    out: dict[tuple[str, str], int] = {}
    for field, value in raw.items():
        m = CALLS_FIELD.match(field)
        if m:
            out[(m["purpose"], m["outcome"])] = int(value)
    return out


def effective_limit(limit: int, factor: float) -> int:
    """How many calls a window may hold now: floor(limit * factor), at least 1 (the AIMD
    factor, report.lua). acquire.lua uses the same rule (lua/_effective.lua)."""
    return max(1, int(limit * factor + 1e-9))


def default_margin_ms(window_ms: int) -> int:
    return max(MIN_MARGIN_MS, int(window_ms * MARGIN_SHARE))


def _address(redis: Redis) -> tuple[Any, ...]:
    """Where ``redis`` connects (a restart keeps it; a Sentinel pool names its service)."""
    pool = redis.connection_pool
    kw = pool.connection_kwargs
    return (kw.get("host"), kw.get("port"), kw.get("path"), kw.get("db", 0),
            getattr(pool, "service_name", None))


class Limiter:
    """One bucket (account x purpose) plus the account's shared gates. Thread-safe."""

    def __init__(self, redis: Redis, keys: Keys, account: str, purpose: str, rate: RateSpec,
                 policy: Policy | None = None, burst: int = 1, margin_ms: int | None = None,
                 respect_pause: bool = True, credit_floor: float = 0.0) -> None:
        self.redis = redis
        self.purpose = purpose
        self.rate = rate
        self.policy = policy or Policy()
        self.burst = max(1, min(burst, rate.limit))
        self.window_ms = rate.window_ms + (default_margin_ms(rate.window_ms)
                                           if margin_ms is None else margin_ms)
        self.respect_pause = respect_pause
        #: with respect_pause: credits below which no submission is granted (acquire.lua)
        self.credit_floor = credit_floor
        self.log_key = keys.bucket_log(account, purpose)
        self.state_key = keys.limiter_state(account)
        self._report = scripts.register(redis, "report")
        self._settle = scripts.register(redis, "settle")
        #: normal answers held back to travel with the next acquire (answers.py)
        self._held = Held()
        self._settle_config = f"{purpose}|{rate.limit}|{'1' if respect_pause else '0'}"
        #: one pacing slot at the configured rate (W / N; at a cut rate slots are longer, so
        #: an unused grant giving back this much never gives back more than it took)
        self._pace_ms = math.ceil(self.window_ms / rate.limit) if self.burst < rate.limit else 0
        self._seen_key = (*_address(redis), self.state_key)
        # the acquire path is hot (workers ask again and again while waiting): the bucket's
        # configuration is written into the script's text as Lua literals (no parsing per
        # call), and the command is sent straight as EVALSHA (not through redis-py's Script
        # object, which adds its own work per call)
        self._config = (
            f"'{purpose}', {rate.limit}, {self.window_ms}, {self.burst}, "
            f"{'true' if respect_pause else 'false'}, {self.policy.probe_lease_ms}, "
            f"{self.policy.flight_ms}, {format(max(0.0, credit_floor), 'f')}")
        if not re.fullmatch(r"[a-z]+", purpose):  # it goes into the script's text
            raise ValueError(f"bad purpose {purpose!r}")
        #: EVALSHA head of acquire for the instance this process knows the account on (none
        #: yet: the first try_acquire meets NOSCRIPT and decides the fence)
        self._head = self._for_instance(_SEEN.get(self._seen_key, ""))[1]
        #: grant ids: unique across processes (random prefix) and within one (a counter)
        self._id_prefix = f"{secrets.token_hex(6)}-"
        self._ids = itertools.count()

    def try_acquire(self) -> Grant:
        """One round trip: a token now, or the reason and the wait until one may be free.
        The grants this process saw answered since travel with it (answers.py)."""
        grant_id, args = self._acquire_args()
        try:
            reply = self.redis.execute_command(*args)
        except NoScriptError as exc:  # an instance not known to this process (restart...)
            reply = exc
        return self.grant_from(grant_id, reply)

    def try_acquire_on(self, pipe: Any) -> Callable[[Any], Grant]:
        """Queue this bucket's acquire on ``pipe`` (a non-transactional pipeline of the same
        Redis, run with ``raise_on_error=False``), so it shares the caller's round trip;
        returns what turns its reply into the Grant."""
        grant_id, args = self._acquire_args()
        pipe.execute_command(*args)
        return lambda reply: self.grant_from(grant_id, reply)

    def _acquire_args(self) -> tuple[str, tuple[Any, ...]]:
        grant_id = f"{self._id_prefix}{next(self._ids)}"
        return grant_id, ("EVALSHA", *self._head, grant_id, *self._held.take_ids())

    def grant_from(self, grant_id: str, reply: Any) -> Grant:
        """acquire.lua's reply (or the NOSCRIPT error instead) as a Grant."""
        if isinstance(reply, int):  # the hot path: a plain grant at this time (ms)
            return Grant(True, 0.0, reply, Kind.OK, grant_id)
        if isinstance(reply, NoScriptError):
            reply = "0|0|0|recheck"
        elif isinstance(reply, Exception):
            raise reply
        if isinstance(reply, bytes):
            reply = reply.decode()
        if reply.endswith("|recheck"):  # or the state was decided elsewhere, or lost
            reply = self._decide_then_acquire(grant_id)
            if isinstance(reply, int):
                return Grant(True, 0.0, reply, Kind.OK, grant_id)
        granted, wait_ms, now_ms, kind = reply.split("|")
        if granted == "1":
            return Grant(True, 0.0, int(now_ms), _KINDS[kind], grant_id)
        return Grant(False, int(float(wait_ms)) / 1000, int(now_ms), _KINDS[kind])

    def flush(self) -> None:
        """Send the answers held for this bucket now (settle.lua)."""
        batch = self._held.take()
        if batch is None:
            return
        try:
            self._settle(keys=[self.log_key, self.state_key],
                         args=[self._settle_config, *batch.args()])
        except BaseException:
            self._held.put_back(batch)
            FLUSHER.schedule(id(self), self.flush)  # the flusher tries again
            raise

    def _for_instance(self, run_id: str) -> tuple[str, tuple[Any, ...]]:
        """acquire.lua's text for the instance ``run_id`` (its first line names it and the
        bucket's configuration, so its sha is this bucket's on that instance) and the
        EVALSHA head that asks for it."""
        text = (f"local instance, purpose, limit, window_ms, burst, respect_pause, "
                f"probe_lease_ms, flight_ms, floor = '{run_id}', {self._config}\n"
                f"{scripts.source('acquire')}")
        sha = hashlib.sha1(text.encode()).hexdigest()
        return text, (sha, 2, self.log_key.encode(), self.state_key.encode())

    def _decide_then_acquire(self, grant_id: str) -> str | int:
        """Decide the fence on the current instance, then ask again (a few rounds while the
        instance keeps changing under us; then a short "fence" refusal)."""
        for _ in range(FENCE_ROUNDS):
            self.fence_check()
            try:
                reply = self.redis.execute_command("EVALSHA", *self._head, grant_id)
            except NoScriptError:
                continue
            reply = reply.decode() if isinstance(reply, bytes) else reply
            if isinstance(reply, int) or not reply.endswith("|recheck"):
                return reply
        return f"0|{WAKE_JITTER_MS * 10}|{server_ms(self.redis)}|fence"

    def fence_check(self) -> str:
        """Run fence.lua on the current Redis instance and load acquire for it, in one
        transaction (no grant on an instance before its fence decision); returns fence.lua's
        verdict: "same" | "new" (not fenced) | "moved" | "lost" (fenced for one window)."""
        expected = str(self.redis.info("server")["run_id"])
        if not expected.isalnum():  # it goes into the script's text
            raise RuntimeError(f"unexpected run_id in INFO server: {expected!r}")
        text, head = self._for_instance(expected)
        pipe = self.redis.pipeline(transaction=True)
        pipe.eval(scripts.source("fence"), 1, self.state_key, _SEEN.get(self._seen_key, ""))
        pipe.script_load(text)
        decided = pipe.execute()[0]
        run_id, fence_at, why = (decided.decode() if isinstance(decided, bytes)
                                 else decided).split("|")
        if run_id != expected:
            # the instance changed between INFO and MULTI: the script just loaded names
            # another instance; never leave it there (a later failback could make it valid)
            self.redis.script_flush()
        else:
            self._head = head
        _SEEN[self._seen_key] = run_id
        if why in ("moved", "lost"):
            log.warning("limiter: %s %s (instance %s): no grant for one window from %s ms",
                        self.state_key, "restored or replicated from another instance"
                        if why == "moved" else "lost", run_id, fence_at)
        return why

    def acquire(self, max_wait_s: float, sleep: Callable[[float], None] = time.sleep) -> Grant:
        """Sleep until granted; return the refusal at once when the account is paused or
        its breaker is open, or when waiting would pass ``max_wait_s`` in total."""
        waited = 0.0
        while True:
            grant = self.try_acquire()
            if grant.granted or grant.kind in UNSLEPT or waited + grant.wait_s > max_wait_s:
                return grant
            nap = grant.wait_s + random.uniform(0, WAKE_JITTER_MS) / 1000
            sleep(nap)
            waited += nap

    def report(self, outcome: Outcome, grant: Grant | None = None,
               retry_after_s: float | None = None) -> Effect:
        """Feed one provider answer back; returns what it did to the account's state.
        A normal answer of a plain grant is held and travels with the bucket's next acquire,
        or within FLUSH_S (answers.py): its effect is "none"."""
        signal = _SIGNALS[outcome]
        if signal is Signal.UP and grant is not None and grant.kind is Kind.OK:
            if self._held.add(outcome.value, grant.grant_id):
                FLUSHER.schedule(id(self), self.flush)
            return Effect.NONE
        kind, grant_id = (grant.kind, grant.grant_id) if grant else (Kind.OK, "")
        p = self.policy
        if signal is Signal.THROTTLED:
            jitter_ms = random.uniform(0, 0.2 * max(p.cooldown_ms, (retry_after_s or 0) * 1000))
        elif signal is Signal.MAINTENANCE:
            jitter_ms = random.uniform(0, 0.2 * p.breaker_base_ms)
        else:
            jitter_ms = random.uniform(0, 0.1 * p.pause_probe_ms)
        return self._run_report(signal, kind, grant_id, int((retry_after_s or 0) * 1000),
                                int(jitter_ms), outcome.value)

    def call(self, grant: Grant | None, send: Callable[..., A], *args: Any) -> tuple[A, Effect]:
        """Make the granted call ``send(*args)`` and report its answer (anything with
        ``outcome`` and ``retry_after_s``); returns (answer, effect). A call that raised has no
        answer: it is reported as uncertain, so it counts as answered now."""
        try:
            answer = send(*args)
        except BaseException:
            self.report(Outcome.UNCERTAIN, grant)
            raise
        return answer, self.report(answer.outcome, grant, answer.retry_after_s)

    def _run_report(self, signal: Signal, kind: Kind, grant_id: str, retry_after_ms: int,
                    jitter_ms: int, outcome: str) -> Effect:
        """Run report.lua; ``outcome`` (an Outcome value, "" for an unused grant) is counted
        there as one call (``<purpose>:calls:<outcome>``) and is the reason of a pause."""
        p = self.policy
        return Effect(self._report(
            keys=[self.state_key, self.log_key],
            args=[self.purpose, signal, kind, self.rate.limit, p.beta, 1 / self.rate.limit,
                  p.cooldown_ms, retry_after_ms, jitter_ms, p.breaker_base_ms,
                  p.breaker_cap_ms, outcome, p.pause_probe_ms, grant_id,
                  "1" if self.respect_pause else "0", self._pace_ms],
        ))

    def release(self, grant: Grant | None) -> None:
        """Give back a grant whose call was never made (the job was taken elsewhere): its
        log entry goes, and a paced bucket's schedule steps back one slot."""
        if grant is not None and grant.granted:
            self._run_report(Signal.UNUSED, grant.kind, grant.grant_id, 0, 0, "")

    def pause(self, reason: str = "manual") -> None:
        """Stop submissions fleet-wide until ``resume()`` (no automatic probe)."""
        self.redis.hset(self.state_key, mapping={
            "pause": reason, "pause:auto": "", "pause:since": int(time.time() * 1000)})

    def resume(self) -> None:
        """Lift a pause (manual or credits/auth) at once, and the credit floor's stop until
        the next balance read (the last one is forgotten: the operator topped up)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.state_key, mapping={
            "pause": "", "pause:auto": "", "pause:probe_until": 0,
            "pause:resumed_at": int(time.time() * 1000)})
        pipe.hdel(self.state_key, "credits")
        pipe.execute()

    def gate(self, now_ms: int) -> Gate:
        """The pause, the breaker, the credit floor and the effective limit at ``now_ms``
        (one HMGET)."""
        (pause, auto, probe_at, breaker, breaker_until, factor, *credits) = self.redis.hmget(
            self.state_key, "pause", "pause:auto", "pause:probe_at", "breaker", "breaker:until",
            f"{self.purpose}:factor", *CREDIT_FIELDS)
        probe_due = False
        if pause:
            if auto != "1" or now_ms < int(probe_at or 0):
                return Gate(True, False, 0)
            probe_due = True
        if breaker == "open":
            if now_ms < int(breaker_until or 0):
                return Gate(True, False, 0)
            probe_due = True
        eff = effective_limit(self.rate.limit, float(factor or 1))
        room = self.credit_room(dict(zip(CREDIT_FIELDS, credits, strict=True)))
        if room is not None:
            if room <= 0:
                return Gate(True, False, 0)
            eff = min(eff, room)
        return Gate(False, probe_due, eff)

    def credit_room(self, raw: dict[str, Any]) -> int | None:
        """How many more submissions the account's credits pay for above its floor, from the
        last balance read, the learned (or configured) cost and the accepted calls since the
        read (calls in flight not deducted); None while a balance or a cost is unknown, or
        for a bucket the floor does not apply to (polls)."""
        if not self.respect_pause:
            return None
        try:
            balance, cost = float(raw.get("credits") or "x"), float(raw.get("credits:cost") or "x")
        except ValueError:
            return None
        if cost <= 0:
            return None
        since = max(0, int(raw.get("credits:charged") or 0)
                    - int(raw.get("credits:charged_at_read") or 0))
        return max(0, int((balance - self.credit_floor) / cost + 1e-9) - since)

    def state(self) -> dict[str, Any]:
        """What operators see: effective rate, tokens left, cool-down, breaker, pause (with
        this process's held answers applied first)."""
        self.flush()
        raw = self.redis.hgetall(self.state_key)
        now_ms = server_ms(self.redis)
        used = self.redis.zcount(self.log_key, now_ms - self.window_ms + 1, "+inf")
        in_flight = self.redis.zcount(self.log_key, f"({now_ms}", "+inf")  # not answered yet
        view = self.view(raw, now_ms, used, in_flight)
        return {**view, "factor": round(view["factor"], 4)}

    def view(self, raw: dict[str, str], now_ms: int, used: int, in_flight: int
             ) -> dict[str, Any]:
        """The figures of :meth:`state` from what it reads: the account's state hash, the
        Redis time, the calls the window holds and those not answered yet (the metrics
        collector reads the same in one pipeline for every bucket). ``factor`` unrounded."""
        factor = float(raw.get(f"{self.purpose}:factor") or 1)
        eff = effective_limit(self.rate.limit, factor)
        cool = int(float(raw.get(f"{self.purpose}:cooldown_until") or 0))
        b_until = int(float(raw.get("breaker:until") or 0))
        fence_end = int(raw.get("fence_at") or 0) + self.window_ms
        return {
            "purpose": self.purpose,
            "rate": str(self.rate),
            "burst": self.burst,
            "effective_limit": eff,
            "factor": factor,
            "tokens": max(0, eff - used),
            "window_calls": used,
            "in_flight": in_flight,
            "cooldown_s": max(0, cool - now_ms) / 1000,
            "fence_s": max(0, fence_end - now_ms) / 1000,
            "cuts": int(raw.get(f"{self.purpose}:cuts") or 0),
            "throttles": int(raw.get(f"{self.purpose}:throttles") or 0),
            "calls": {outcome: n for (purpose, outcome), n in call_counts(raw).items()
                      if purpose == self.purpose},
            "breaker": {
                "state": ("half-open" if now_ms >= b_until else "open")
                if raw.get("breaker") == "open" else "closed",
                "open_for_s": max(0, b_until - now_ms) / 1000,
                "trips": int(raw.get("breaker:trips") or 0),
            },
            "pause": {
                "paused": bool(raw.get("pause")),
                "reason": raw.get("pause") or None,
                "automatic_probe": raw.get("pause:auto") == "1",
                "next_probe_in_s": max(0, int(raw.get("pause:probe_at") or 0) - now_ms) / 1000
                if raw.get("pause:auto") == "1" else None,
            },
        }
