"""Read-only figures for operators: limiter and backlog state of one provider account, and
the Prometheus metrics (``GET /v1/limiter``, ``GET /metrics``, ``backbeat limiter``).

Every metric is read from Redis when it is scraped (:class:`RedisCollector`), never kept in
the process: the counters live in Redis, where every worker process on every machine adds to
them (``report.lua`` counts each provider answer in the account's state hash), so any ``web``
process answers the same figures for the whole fleet. The list, with each metric's meaning, is
in docs/OPERATIONS.md ("Metrics") and in the HELP text below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..config.celery import celery_config
from ..provider.client import parse_balance
from ..provider.profiles import Outcome
from .accounts import Account
from .lanes import lanes
from .limiter import CREDIT_FIELDS, Limiter, call_counts
from .redis_conn import server_ms
from .runtime import Runtime
from .states import ORDER
from .store import DUPLICATES


def limiter_status(rt: Runtime) -> dict[str, Any]:
    """Every account's rates, tokens, cool-downs, breaker, pause and last credit balance read,
    and the backlog sizes (a handful of commands per account). The first account's figures
    are also at the top level (what a single-account deployment always showed)."""
    keys, redis = rt.keys, rt.redis
    accounts = [account_status(rt, account) for account in rt.accounts]
    first = {k: v for k, v in accounts[0].items() if k not in ("name", "weight", "credit_floor")}
    return {
        **first,
        "accounts": accounts,
        "backlog": {
            "queued": redis.zcard(keys.queued),
            "parked": redis.zcard(keys.parked),
            "in_broker": sum(rt.broker_redis.llen(q) for q in keys.submit_queues),
            "in_flight": redis.zcard(keys.poll),
            "uncertain": redis.zcard(keys.uncertain),
            "in_lanes": redis.hlen(keys.lane_of),
        },
    }


def account_status(rt: Runtime, account: Account) -> dict[str, Any]:
    """One account's limiter figures (its buckets' Limiter.state, its credits)."""
    submit = account.submit.state()
    poll = account.poll.state()
    pipe = rt.redis.pipeline(transaction=False)
    pipe.time()
    pipe.hmget(rt.keys.limiter_state(account.id), CREDITS_AT_FIELD, *CREDIT_FIELDS)
    (secs, micros), (read_at, *credit_values) = pipe.execute()
    raw = dict(zip(CREDIT_FIELDS, credit_values, strict=True))
    return {
        "name": account.name,
        "account": account.id,
        "provider": account.profile.name,
        "weight": account.weight,
        "credit_floor": account.spec.credit_floor,
        "breaker": submit.pop("breaker"),
        "pause": submit.pop("pause"),
        "credits": {**credits_figures(raw[CREDITS_FIELD], read_at,
                                      int(secs) * 1000 + int(micros) // 1000),
                    **credit_floor_figures(account.submit, raw)},
        "submit": submit,
        "poll": {k: v for k, v in poll.items() if k not in ("breaker", "pause")},
    }

#: pause reasons always exported by ``backbeat_paused`` (0 unless current): a manual pause,
#: and the answers that pause submissions (report.lua's signal "paused")
PAUSE_REASONS = ("manual", Outcome.CREDITS.value, Outcome.UNAUTHORIZED.value,
                 Outcome.NOT_FOUND.value)
#: the account's state hash fields of the last credit balance read (tasks/credits.py writes
#: both in one script call): the balance, and the Redis time of the read in ms
CREDITS_FIELD, CREDITS_AT_FIELD = "credits", "credits:at"


def credits_figures(balance: str | None, read_at: str | None, now_ms: int) -> dict[str, Any]:
    """The last balance read and its age in seconds at ``now_ms``; both None before the
    first read (``BACKBEAT_CREDITS_INTERVAL``, tasks/credits.py)."""
    value = parse_balance(balance)
    if value is None or not read_at:
        return {"balance": None, "read_s_ago": None}
    return {"balance": value, "read_s_ago": max(0, now_ms - int(read_at)) / 1000}


def credit_floor_figures(submit: Limiter, raw: dict[str, Any]) -> dict[str, Any]:
    """The credit floor's figures: the cost of one accepted submission (learned or
    configured; None before it is known), the floor, and how many more submissions the last
    balance pays for above it (None while unknown; 0: submissions stopped until a read shows
    more)."""
    try:
        cost = float(raw.get("credits:cost") or "x")
    except ValueError:
        cost = None
    return {"cost": cost, "floor": submit.credit_floor, "room": submit.credit_room(raw)}


def queue_lists(rt: Runtime) -> dict[str, list[str]]:
    """Every declared Celery queue (config/celery.py) -> the broker lists that hold it
    (``Keys.queue_lists``: one per priority step)."""
    return {queue.name: rt.keys.queue_lists(queue.name)
            for queue in celery_config(rt.settings)["task_queues"]}


def buckets(account: Account) -> list[Limiter]:
    """The account's limiter buckets, one per purpose (one only when polls share the submit
    window: the poll limiter is then the submit bucket, and its calls count as ``submit``)."""
    out: list[Limiter] = []
    for lim in (account.submit, account.poll):
        if all(lim.purpose != b.purpose for b in out):
            out.append(lim)
    return out


class Read(NamedTuple):
    """One account's figures as the collector's pipeline read them."""

    account: str
    lims: list[Limiter]
    raw: dict[str, str]
    window_calls: list[int]
    views: list[dict[str, Any]]


class RedisCollector(Collector):
    """Prometheus collector: every family read from Redis at scrape time (two round trips:
    the server's clock, then one pipeline)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.queues = queue_lists(rt)

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        keys, redis = rt.keys, rt.redis
        now_ms = server_ms(redis)
        pipe = redis.pipeline(transaction=False)
        for index in keys.state_indexes:
            pipe.zcard(index)
        pipe.zcard(keys.parked)
        pipe.zcard(keys.uncertain)
        pipe.zcard(keys.poll)
        pipe.zrange(keys.poll, 0, 0, withscores=True)
        pipe.get(keys.metric(DUPLICATES))
        for account in rt.accounts:
            pipe.hgetall(keys.limiter_state(account.id))
            for lim in buckets(account):  # what Limiter.state() counts: in the window, in flight
                pipe.zcount(lim.log_key, now_ms - lim.window_ms + 1, "+inf")
                pipe.zcount(lim.log_key, f"({now_ms}", "+inf")
        replies = iter(pipe.execute())
        broker = rt.broker_redis.pipeline(transaction=False)  # BACKBEAT_BROKER_URL's Redis
        for lists in self.queues.values():
            for name in lists:
                broker.llen(name)
        lengths = iter(broker.execute())

        jobs = GaugeMetricFamily("backbeat_jobs", "Jobs in each state (the per-state indexes).",
                                 labels=["state"])
        for state in ORDER:
            jobs.add_metric([state.value], next(replies))
        yield jobs

        depth = GaugeMetricFamily(
            "backbeat_queue_depth",
            "Messages waiting in each Celery queue's broker lists (all priority steps).",
            labels=["queue"])
        for queue, lists in self.queues.items():
            depth.add_metric([queue], sum(next(lengths) for _ in lists))
        yield depth

        for name, what in (("parked", "Queued jobs parked until a time (limiter refusal, "
                                      "pause, breaker, retry backoff)."),
                           ("uncertain", "Jobs whose submit answer was lost, waiting out "
                                         "their grace period."),
                           ("in_flight", "Jobs with an upstream task on the poll schedule.")):
            yield GaugeMetricFamily(f"backbeat_{name}_jobs", what, value=next(replies))

        oldest = next(replies)
        lag_ms = max(0, now_ms - int(oldest[0][1])) if oldest else 0
        yield GaugeMetricFamily(
            "backbeat_reconcile_lag_seconds",
            "How far the poll schedule is behind: now minus the time of the oldest due poll "
            "(0 when none is due).", value=lag_ms / 1000)

        yield CounterMetricFamily(
            "backbeat_duplicate_upstream_tasks",
            "Second upstream tasks seen for a job (recorded on the job; a paid duplicate).",
            value=int(next(replies) or 0))

        reads = []
        for account in rt.accounts:
            raw: dict[str, str] = next(replies)
            lims, window_calls, views = buckets(account), [], []
            for lim in lims:
                used, in_flight = next(replies), next(replies)
                window_calls.append(used)
                views.append(lim.view(raw, now_ms, used, in_flight))
            reads.append(Read(account.id, lims, raw, window_calls, views))
        yield from self._limiter(reads, now_ms)

        waiting = GaugeMetricFamily(
            "backbeat_lane_jobs", "Jobs waiting in each producer's lane (served by weight).",
            labels=["producer"])
        waiting_now = lanes(rt)  # every configured producer and "default", 0 when idle
        names = {"default", *(p.name for p in rt.settings.producers), *waiting_now}
        for producer in sorted(names):
            waiting.add_metric([producer], waiting_now.get(producer, 0))
        yield waiting

    def _limiter(self, reads: list[Read], now_ms: int) -> Iterator[Metric]:
        """The limiter's families, one sample per account (and purpose), from each bucket's
        ``Limiter.view`` (each account's state hash read once); ``raw`` only for the call
        counters report.lua keeps, the pause's start and the credits."""
        ab = ["account", "purpose"]
        calls = CounterMetricFamily(
            "backbeat_provider_calls",
            "Provider calls answered (or given up on), by outcome; counted by report.lua.",
            labels=["account", "purpose", "outcome"])
        for r in reads:
            counted: dict[tuple[str, str], int] = {
                (lim.purpose, o.value): 0 for lim in r.lims for o in Outcome}
            counted.update(call_counts(r.raw))
            for (purpose, outcome), n in counted.items():
                calls.add_metric([r.account, purpose, outcome], n)
        yield calls

        fams = {
            "limit": GaugeMetricFamily("backbeat_limit", "Configured N of the rule N/W.",
                                       labels=ab),
            "window": GaugeMetricFamily("backbeat_limit_window_seconds",
                                        "Configured W of the rule N/W, in seconds.",
                                        labels=ab),
            "eff": GaugeMetricFamily(
                "backbeat_effective_limit",
                "Calls a window may hold now: floor(N * throttle factor), at least 1.",
                labels=ab),
            "used": GaugeMetricFamily(
                "backbeat_window_calls",
                "Calls the limiter counts in the window ending now (answered or in flight).",
                labels=ab),
            "factor": GaugeMetricFamily(
                "backbeat_throttle_factor",
                "AIMD factor (1 = full rate; cut on a throttle, grows back on success).",
                labels=ab),
            "cool": GaugeMetricFamily("backbeat_cooldown_seconds",
                                      "Seconds left of the shared cool-down after a throttle.",
                                      labels=ab),
            "throttles": CounterMetricFamily("backbeat_throttles",
                                             "Throttle answers reported.", labels=ab),
            "cuts": CounterMetricFamily(
                "backbeat_rate_cuts",
                "Multiplicative cuts of the factor (at most one per cool-down).", labels=ab),
        }
        for r in reads:
            for lim, used, view in zip(r.lims, r.window_calls, r.views, strict=True):
                for name, value in (
                        ("limit", lim.rate.limit), ("window", lim.rate.window_ms / 1000),
                        ("eff", view["effective_limit"]), ("used", used),
                        ("factor", view["factor"]), ("cool", view["cooldown_s"]),
                        ("throttles", view["throttles"]), ("cuts", view["cuts"])):
                    fams[name].add_metric([r.account, lim.purpose], value)
        yield from fams.values()

        a = ["account"]
        is_open = GaugeMetricFamily(
            "backbeat_breaker_open",
            "1 while the 455 breaker is open (half-open included: only its probe may call).",
            labels=a)
        half = GaugeMetricFamily(
            "backbeat_breaker_half_open",
            "1 while the breaker's open time is over and its probe is due or out.", labels=a)
        trips = CounterMetricFamily("backbeat_breaker_trips", "Times the 455 breaker opened.",
                                    labels=a)
        paused = GaugeMetricFamily(
            "backbeat_paused",
            "1 for the reason submissions are paused now (manual, credits, unauthorized, "
            "not_found), 0 for the others.", labels=["account", "reason"])
        held = GaugeMetricFamily("backbeat_pause_seconds",
                                 "Seconds the current pause has lasted (0 when not paused).",
                                 labels=a)
        credits = GaugeMetricFamily(
            "backbeat_credits", "The account's credit balance at its last read (the "
            "provider's credit endpoint, every BACKBEAT_CREDITS_INTERVAL).", labels=a)
        age = GaugeMetricFamily("backbeat_credits_age_seconds",
                                "Seconds since the credit balance was last read.", labels=a)
        cost = GaugeMetricFamily(
            "backbeat_credit_cost", "Credits one accepted submission costs (learned from "
            "balance reads, or the account's credit_cost).", labels=a)
        room = GaugeMetricFamily(
            "backbeat_credit_room", "Submissions the last balance still pays for above the "
            "account's credit floor (0: its submissions are stopped until a read shows more).",
            labels=a)
        for r in reads:
            breaker = r.views[0]["breaker"]  # the breaker and the pause are the account's
            is_open.add_metric([r.account], int(breaker["state"] != "closed"))
            half.add_metric([r.account], int(breaker["state"] == "half-open"))
            trips.add_metric([r.account], breaker["trips"])
            reason = r.views[0]["pause"]["reason"] or ""
            for why in (*PAUSE_REASONS, *([reason] if reason and reason not in PAUSE_REASONS
                                          else [])):
                paused.add_metric([r.account, why], int(why == reason))
            since = int(float(r.raw.get("pause:since") or 0))
            if not reason:
                held.add_metric([r.account], 0)
            elif since:
                held.add_metric([r.account], max(0, now_ms - since) / 1000)
            # the last credit balance read (tasks/credits.py): no sample until the first read,
            # so no made-up 0 balance before the account was ever asked
            read = credits_figures(r.raw.get(CREDITS_FIELD), r.raw.get(CREDITS_AT_FIELD), now_ms)
            if read["balance"] is not None:
                credits.add_metric([r.account], read["balance"])
                age.add_metric([r.account], read["read_s_ago"])
            floor = credit_floor_figures(r.lims[0], r.raw)  # the submit bucket
            if floor["cost"] is not None:
                cost.add_metric([r.account], floor["cost"])
            if floor["room"] is not None:
                room.add_metric([r.account], floor["room"])
        yield from (is_open, half, trips, paused, held)
        for family in (credits, age, cost, room):
            if family.samples:
                yield family


def metrics_registry(rt: Runtime) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding the Redis collector."""
    registry = CollectorRegistry()
    registry.register(RedisCollector(rt))
    return registry


def metrics_text(rt: Runtime, registry: CollectorRegistry | None = None) -> bytes:
    """The Prometheus text exposition (``prometheus_client.CONTENT_TYPE_LATEST``), read from
    Redis now."""
    return generate_latest(registry or metrics_registry(rt))
