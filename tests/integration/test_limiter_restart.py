"""Lost limiter state, counted at the provider's side: Redis restarted empty mid-window, and a
failover to a replica that had not received the last grants. Either way the provider must never
see N+1 calls in one of its windows (limiter.py's docstring: the fence).

Threads stand in for worker processes (each with its own Limiter and Redis connection pool);
every figure is the simulator's own count of create calls per window, never a duration.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter

import pytest
from redis import Redis
from redis.exceptions import RedisError

from backbeat.config.settings import RateSpec
from backbeat.devstack.processes import free_port, start_redis, wait_until
from backbeat.provider.client import ProviderClient
from backbeat.workers.keys import Keys
from backbeat.workers.limiter import Limiter, Policy

pytestmark = pytest.mark.integration

N, WINDOW_S = 10, 5.0
#: the provider's rule, at the simulator too, so a call over it is counted as throttled
RULE = {"rate_limit": N, "rate_window_s": WINDOW_S, "callbacks_enabled": False}
RATE = RateSpec(N, int(WINDOW_S * 1000))
THREADS = 4
#: generous bound for every wait (a noisy shared machine)
BOUND_S = 90.0


class Callers:
    """THREADS threads that each acquire from the submit bucket (burst = N: the window fills
    at once) and POST a create call to the simulator with every grant."""

    def __init__(self, port: int, provider: ProviderClient, prefix: str, tag: str) -> None:
        self.port, self.provider, self.prefix, self.tag = port, provider, prefix, tag
        self.kinds: Counter[str] = Counter()
        self.redis_errors = 0
        self.lock, self.stop_event = threading.Lock(), threading.Event()
        self.limiters: list[Limiter] = []
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(THREADS)]

    def start(self) -> Callers:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self.threads)

    def _run(self, n: int) -> None:
        redis = Redis(port=self.port, decode_responses=True, socket_timeout=5,
                      socket_connect_timeout=1)
        lim = Limiter(redis, Keys(self.prefix), "acct", "submit", RATE,
                      Policy(flight_ms=20_000), burst=N)
        with self.lock:
            self.limiters.append(lim)
        calls = 0
        while not self.stop_event.is_set():
            try:
                grant = lim.acquire(max_wait_s=0.5)
            except RedisError:  # Redis is down: a worker would retry its task later
                with self.lock:
                    self.redis_errors += 1
                self.stop_event.wait(0.05)
                continue
            with self.lock:
                self.kinds[grant.kind] += 1
            if not grant.granted:
                continue
            calls += 1
            body = {"uploadUrl": "https://example.com/v.mp3", "title": f"{self.tag}-{n}-{calls}",
                    "tags": "rock", "negativeTags": "metal"}
            try:
                lim.call(grant, self.provider.create, "add-instrumental", body,
                         "http://127.0.0.1:9/callback")
            except RedisError:  # the call was made; only its report was lost with Redis
                with self.lock:
                    self.redis_errors += 1


@pytest.fixture
def provider(settings) -> ProviderClient:
    return ProviderClient(settings.provider, settings.api_base_url, settings.api_key,
                          connect_timeout_s=5, read_timeout_s=10)


@pytest.fixture
def servers(redis_server, run_dir):
    """``servers(port)`` starts a private redis-server; all are stopped after the test."""
    started = []

    def start(port: int):
        proc = start_redis(run_dir, port)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def kill(proc) -> None:
    proc.signal(signal.SIGKILL)
    proc.popen.wait(20)


def calls_at_sim(sim, at_least: int, what: str) -> None:
    wait_until(lambda: sim.stats()["calls_total"] >= at_least, BOUND_S, what)


def assert_never_over_the_rule(sim, at_least: int) -> dict:
    stats = sim.stats()
    figures = {k: stats[k] for k in ("calls_total", "max_calls_in_window", "throttled")}
    assert stats["calls_total"] >= at_least, figures  # several windows really went through
    assert stats["max_calls_in_window"] <= N, figures
    assert stats["throttled"] == 0, figures
    assert stats["accepted"] == stats["calls_total"] and stats["duplicates_by_title"] == 0
    return stats


@pytest.mark.slow  # make test-all (the chaos run restarts Redis in make test)
def test_redis_restarted_empty_mid_window_never_puts_n_plus_1_calls_in_a_window(
        sim, servers, provider):
    """Given a full window of calls granted and answered, then Redis SIGKILLed and restarted
    EMPTY on the same port mid-window while the callers keep acquiring, expect 0 windows over
    N and 0 throttled calls at the simulator, through two more windows of calls."""
    sim.set_knobs(**RULE)
    port = free_port()
    server = servers(port)
    callers = Callers(port, provider, "rs", "restart").start()
    try:
        calls_at_sim(sim, N, "the first window's calls")
        kill(server)  # mid-window: the provider saw N calls a moment ago
        servers(port)  # empty: no RDB, no AOF
        calls_at_sim(sim, 3 * N, "two more windows of calls after the restart")
    finally:
        callers.stop()
    stats = assert_never_over_the_rule(sim, 3 * N)
    assert callers.kinds["fence"] >= 1, callers.kinds  # the restart was met by the fence
    state = Redis(port=port, decode_responses=True).hgetall("rs:lim:{acct}:state")
    assert state["fence:why"] == "lost", state
    assert stats["calls_total"] == callers.kinds["ok"]


@pytest.mark.slow  # make test-all: keeps make test inside 15 minutes
def test_failover_to_a_lagging_replica_never_puts_n_plus_1_calls_in_a_window(
        sim, servers, provider):
    """Given a replica that received the account's state but not the last window of grants,
    the primary SIGKILLed and the replica promoted, and new limiters on the replica, expect
    0 windows over N and 0 throttled calls at the simulator."""
    sim.set_knobs(**RULE)
    p_port, r_port = free_port(), free_port()
    primary = servers(p_port)
    servers(r_port)
    replica = Redis(port=r_port, decode_responses=True)
    replica.replicaof("127.0.0.1", p_port)
    state_key = "fo:lim:{acct}:state"
    # the account's first record (fence.lua's ``server``) reaches the replica; no call yet
    first = Limiter(Redis(port=p_port, decode_responses=True), Keys("fo"), "acct", "submit",
                    RATE, burst=N)
    first.release(first.try_acquire())
    old = Redis(port=p_port, decode_responses=True).info("server")["run_id"]
    wait_until(lambda: replica.hget(state_key, "server") == old, BOUND_S, "replication")
    # the replica lags from now on: it follows a master that is not there (its data is kept)
    replica.replicaof("127.0.0.1", free_port())
    on_primary = Callers(p_port, provider, "fo", "primary").start()
    try:
        calls_at_sim(sim, N, "a full window of calls through the primary")
    finally:
        on_primary.stop()
    kill(primary)
    assert replica.zcard("fo:lim:{acct}:submit:log") == 0  # it never saw those grants
    replica.replicaof("no", "one")  # promoted
    on_replica = Callers(r_port, provider, "fo", "replica").start()
    try:
        calls_at_sim(sim, 3 * N, "two more windows of calls through the promoted replica")
    finally:
        on_replica.stop()
    assert_never_over_the_rule(sim, 3 * N)
    assert on_replica.kinds["fence"] >= 1, on_replica.kinds
    assert replica.hget(state_key, "fence:why") == "moved"
