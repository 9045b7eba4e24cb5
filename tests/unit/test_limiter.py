"""The adaptive limiter on a real Redis: exact window, AIMD, breaker, pause (server clock)."""

import signal
import threading
import time

import pytest
from redis import Redis

from backbeat.config.settings import RateSpec
from backbeat.devstack.processes import free_port, start_redis, wait_until
from backbeat.provider.profiles import Outcome
from backbeat.simulator.ledger import max_in_window
from backbeat.workers.answers import FLUSH_S
from backbeat.workers.keys import Keys
from backbeat.workers.limiter import Limiter, Policy
from backbeat.workers.redis_conn import server_ms

FAST = Policy(beta=0.5, cooldown_ms=300, breaker_base_ms=400, breaker_cap_ms=2000,
              pause_probe_ms=400, probe_lease_ms=1000, flight_ms=60_000)


TEN_PER_S = RateSpec(10, 1000)

# Timing rule of this file: whatever must still be blocked when the test looks is blocked for
# seconds (a shared machine can stall the test for a good part of one), and whatever must have
# ended is waited for with room to spare; bounds are never asserted to within a few ms.


def make(redis, rate=TEN_PER_S, burst=None, account="acct", purpose="submit",
         policy=FAST, **kw):
    return Limiter(redis, Keys("bb"), account, purpose, rate, policy,
                   burst=rate.limit if burst is None else burst, margin_ms=0, **kw)


def test_burst_limit_grants_back_to_back_then_waits(redis):
    lim = make(redis, RateSpec(5, 60_000))
    grants = [lim.try_acquire() for _ in range(7)]
    assert [g.granted for g in grants] == [True] * 5 + [False] * 2
    assert grants[5].kind == "window" and 0 < grants[5].wait_s <= 60


def test_pacing_with_burst_one(redis):
    lim = make(redis, RateSpec(10, 100_000), burst=1)  # slots 10 s apart
    assert lim.try_acquire().granted
    refused = lim.try_acquire()
    assert not refused.granted and refused.kind == "window" and 5 < refused.wait_s <= 10


def test_no_window_ever_holds_more_than_the_limit_under_threads(redis):
    """Given 8 threads hammering one bucket, expect at most N grants in every window."""
    lim = make(redis, RateSpec(10, 500))
    grants, lock, stop = [], threading.Lock(), time.monotonic() + 2.0

    def hammer():
        while time.monotonic() < stop:
            grant = lim.acquire(max_wait_s=1.0)
            if grant.granted:
                lim.report(Outcome.ACCEPTED, grant)
                with lock:
                    grants.append(grant.at_ms)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(grants) >= 20  # it really granted across several windows
    assert max_in_window(grants, 500) <= 10  # grant times are the server's own


def test_buckets_are_separate_per_account_and_purpose(redis):
    a = make(redis, RateSpec(1, 10_000), account="acct-a")
    b = make(redis, RateSpec(1, 10_000), account="acct-b")
    p = make(redis, RateSpec(1, 10_000), account="acct-a", purpose="poll")
    assert a.try_acquire().granted and b.try_acquire().granted and p.try_acquire().granted
    assert not a.try_acquire().granted
    assert "{acct-a}" in a.log_key and "{acct-a}" in a.state_key  # one slot per account


def test_throttle_cuts_once_per_cooldown_however_many_report_it(redis):
    lim = make(redis, RateSpec(20, 1000), policy=Policy(beta=0.5, cooldown_ms=2000))
    effects = [lim.report(Outcome.THROTTLED) for _ in range(8)]
    assert effects.count("cut") == 1 and effects.count("cooldown") == 7
    state = lim.state()
    assert state["effective_limit"] == 10 and state["cuts"] == 1 and state["throttles"] == 8
    refused = lim.try_acquire()
    assert not refused.granted and refused.kind == "cooldown"
    time.sleep(2.6)  # the cool-down (2 s + up to 20% jitter) is over
    assert lim.try_acquire().granted
    assert lim.report(Outcome.THROTTLED) == "cut"  # the cool-down ended: a new cut
    assert lim.state()["effective_limit"] == 5


def test_retry_after_sets_the_minimum_cooldown(redis):
    lim = make(redis)
    reported_ms = server_ms(redis)  # no later than the report's own clock
    lim.report(Outcome.THROTTLED, retry_after_s=5)
    refused = lim.try_acquire()
    # the cool-down ends (refusal time + wait) at least Retry-After after the report, at most
    # 20% jitter past it: whenever the test looks, however late
    cooldown_until_ms = refused.at_ms + refused.wait_s * 1000
    assert refused.kind == "cooldown"
    assert reported_ms + 5000 <= cooldown_until_ms <= server_ms(redis) + 6000


def test_successes_raise_the_rate_back_to_the_ceiling(redis):
    lim = make(redis, RateSpec(10, 1000))
    lim.report(Outcome.THROTTLED)
    assert lim.state()["effective_limit"] == 5
    for _ in range(200):
        lim.report(Outcome.ACCEPTED)
    assert lim.state()["effective_limit"] == 10 and lim.state()["factor"] == 1


def test_breaker_opens_and_allows_exactly_one_probe(redis):
    lim = make(redis, policy=Policy(breaker_base_ms=1500, breaker_cap_ms=6000,
                                    probe_lease_ms=10_000))
    assert [lim.report(Outcome.MAINTENANCE) for _ in range(5)] == ["opened"] + ["none"] * 4
    assert lim.try_acquire().kind == "breaker"
    assert lim.state()["breaker"]["state"] == "open"
    time.sleep(2.0)  # open 1.5 s + up to 0.3 s jitter
    grants = [lim.try_acquire() for _ in range(5)]
    assert [g.kind for g in grants] == ["probe"] + ["breaker"] * 4  # the probe's lease holds
    assert lim.report(Outcome.MAINTENANCE, grants[0]) == "opened"  # reopened, for longer
    assert lim.state()["breaker"]["open_for_s"] > 1.5  # 3 s (+ jitter) from the reopening
    time.sleep(3.8)
    probe = lim.try_acquire()
    assert probe.kind == "probe"
    assert lim.report(Outcome.ACCEPTED, probe) == "closed"
    assert lim.try_acquire().kind == "ok" and lim.state()["breaker"]["state"] == "closed"


def test_breaker_blocks_polls_too(redis):
    submit = make(redis)
    poll = make(redis, purpose="poll", respect_pause=False)
    submit.report(Outcome.MAINTENANCE)
    assert poll.try_acquire().kind == "breaker"


def test_credits_pause_probes_slowly_and_a_success_resumes(redis):
    slow_probe = Policy(pause_probe_ms=1500, probe_lease_ms=10_000)
    submit = make(redis, policy=slow_probe)
    poll = make(redis, purpose="poll", respect_pause=False, policy=slow_probe)
    assert submit.report(Outcome.CREDITS) == "paused"
    assert submit.try_acquire().kind == "paused" and poll.try_acquire().granted
    state = submit.state()["pause"]
    assert state == {"paused": True, "reason": "credits", "automatic_probe": True,
                     "next_probe_in_s": pytest.approx(state["next_probe_in_s"])}
    assert state["next_probe_in_s"] > 0
    time.sleep(1.8)  # the probe is due after 1.5 s + up to 0.15 s jitter
    probe = submit.try_acquire()
    assert probe.kind == "pause_probe" and submit.try_acquire().kind == "paused"
    assert submit.report(Outcome.ACCEPTED, probe) == "resumed"
    assert submit.try_acquire().granted


def test_manual_pause_has_no_probe_until_resumed(redis):
    lim = make(redis)
    lim.pause("operator")
    time.sleep(0.5)
    assert lim.try_acquire().kind == "paused"
    lim.resume()
    assert lim.try_acquire().granted


def test_an_unanswered_call_counts_as_arriving_now_until_its_answer(redis):
    """Given N calls in flight, expect no grant however long they take, then one a whole
    window after the N-th answer (the provider stamped it no later than that)."""
    lim = make(redis, RateSpec(2, 1000))
    first, second = lim.try_acquire(), lim.try_acquire()
    assert first.granted and second.granted
    assert lim.state()["in_flight"] == 2 and lim.state()["tokens"] == 0
    for _ in range(2):  # in flight for 2 windows and more: still counted
        refused = lim.try_acquire()
        assert not refused.granted and refused.kind == "window"
        assert refused.wait_s == pytest.approx(1.0, abs=0.002)  # a whole window from now
        time.sleep(1.1)
    answered_ms = server_ms(redis)  # no later than the answer's own stamp
    lim.report(Outcome.ACCEPTED, first)
    assert lim.state()["in_flight"] == 1
    third = lim.acquire(max_wait_s=10)  # the first answer now counts at its answer time
    assert third.granted and third.at_ms - answered_ms >= 1000


def test_a_released_grant_frees_its_slot_at_once(redis):
    lim = make(redis, RateSpec(1, 10_000))
    grant = lim.try_acquire()
    assert grant.granted and not lim.try_acquire().granted
    lim.release(grant)
    assert lim.try_acquire().granted


def test_a_grant_nobody_reports_stops_counting_after_the_flight_bound(redis):
    lim = make(redis, RateSpec(1, 200), policy=Policy(flight_ms=3000))
    assert lim.try_acquire().granted  # its worker "dies": no report, no release
    assert not lim.try_acquire().granted
    time.sleep(3.5)  # flight bound 3 s + window 0.2 s
    assert lim.try_acquire().granted


def test_pacing_keeps_its_schedule_when_a_waiter_wakes_late(redis):
    """Given burst 1 (slots T = 10 s apart) and a waiter that wakes 1 s after its slot (less
    than T/2), expect the next slot one T after the missed one, not one T after the grant;
    given one that comes more than T/2 late, expect the schedule to start afresh."""
    lim = make(redis, RateSpec(10, 100_000), burst=1)
    slot = server_ms(redis) - 1_000  # the slot a sleeping waiter was woken for, 1 s ago
    redis.hset(lim.state_key, "submit:pace", slot)
    late = lim.try_acquire()
    assert late.granted
    assert int(redis.hget(lim.state_key, "submit:pace")) == slot + 10_000
    refused = lim.try_acquire()
    assert not refused.granted and round(refused.wait_s * 1000) <= slot + 10_000 - late.at_ms

    stale = server_ms(redis) - 6_000  # more than T/2 ago: nobody was waiting for it
    redis.hset(lim.state_key, "submit:pace", stale)
    fresh = lim.try_acquire()
    assert fresh.granted
    assert int(redis.hget(lim.state_key, "submit:pace")) == fresh.at_ms + 10_000


def test_acquire_reloads_its_script_after_a_flush(redis):
    """Given a Redis that lost its scripts (restart, SCRIPT FLUSH), expect the next acquire to
    load the script again and grant, not fail."""
    lim = make(redis, RateSpec(5, 1000))
    assert lim.try_acquire().granted
    redis.script_flush()
    assert lim.try_acquire().granted
    assert lim.state()["in_flight"] == 2


def test_a_call_that_raises_counts_as_answered_when_it_raised(redis):
    lim = make(redis, RateSpec(5, 1000))
    grant = lim.try_acquire()

    def send() -> None:
        raise OSError("connection reset")

    with pytest.raises(OSError):
        lim.call(grant, send)
    assert lim.state()["in_flight"] == 0  # lowered to the time it raised, not held in flight


# -- lost state: a Redis instance new to the account fences it for one window ---------------


class OwnRedis:
    """A redis-server of the test's own on a free port, to kill and start again on it."""

    def __init__(self, run_dir, appendonly=False):
        self.run_dir, self.port, self.appendonly = run_dir, free_port(), appendonly
        self.proc = start_redis(run_dir, self.port, appendonly=appendonly)
        self.client = Redis(port=self.port, decode_responses=True)

    def restart(self):
        """SIGKILL, then start again on the same port (empty unless appendonly)."""
        self.proc.signal(signal.SIGKILL)
        self.proc.popen.wait(20)
        self.proc = start_redis(self.run_dir, self.port, appendonly=self.appendonly)

    def run_id(self):
        return self.client.info("server")["run_id"]


@pytest.fixture
def own_redis(redis_server, run_dir):
    """``own_redis(appendonly=False)``: private redis-servers, stopped after the test."""
    started = []

    def make(appendonly=False):
        server = OwnRedis(run_dir, appendonly)
        started.append(server)
        return server

    yield make
    for server in started:
        server.proc.stop()


def test_no_fence_on_a_new_deployment(redis):
    """Given an empty state and a process that never saw another instance, expect no fence."""
    lim = make(redis, RateSpec(3, 60_000), account="fresh")
    assert [lim.try_acquire().kind for _ in range(4)] == ["ok", "ok", "ok", "window"]
    assert redis.hget(lim.state_key, "fence_at") is None
    assert redis.hget(lim.state_key, "server") == redis.info("server")["run_id"]
    assert lim.state()["fence_s"] == 0


def test_fence_when_the_state_names_another_instance(redis):
    """Given a state recorded by another instance (restored from RDB/AOF, or replicated to a
    promoted replica), expect no grant in any bucket of the account for one window."""
    redis.hset(Keys("bb").limiter_state("moved"), "server", "f" * 40)
    submit = make(redis, RateSpec(3, 60_000), account="moved")
    poll = make(redis, RateSpec(3, 60_000), account="moved", purpose="poll")
    refused = submit.try_acquire()
    assert not refused.granted and refused.kind == "fence" and 55 < refused.wait_s <= 60
    assert poll.try_acquire().kind == "fence"  # the fence is the account's
    assert redis.hget(submit.state_key, "fence:why") == "moved"
    assert 55 < submit.state()["fence_s"] <= 60
    fence_at = int(redis.hget(submit.state_key, "fence_at"))
    assert fence_at + 60_000 == refused.at_ms + round(refused.wait_s * 1000)  # one window
    assert submit.fence_check() == "same"  # decided on this instance: not fenced again
    assert int(redis.hget(submit.state_key, "fence_at")) == fence_at


def test_the_fence_lasts_one_window_then_grants_the_full_window(redis):
    redis.hset(Keys("bb").limiter_state("short"), "server", "f" * 40)
    lim = make(redis, RateSpec(3, 1000), account="short")
    refused = lim.try_acquire()
    assert refused.kind == "fence" and 0 < refused.wait_s <= 1
    fence_at = int(redis.hget(lim.state_key, "fence_at"))
    first = lim.acquire(max_wait_s=30)
    assert first.granted and first.at_ms >= fence_at + 1000
    assert [lim.try_acquire().kind for _ in range(3)] == ["ok", "ok", "window"]


def test_a_script_flush_on_the_same_instance_does_not_fence(redis):
    lim = make(redis, RateSpec(3, 60_000), account="flush")
    assert lim.try_acquire().granted
    redis.script_flush()
    assert [lim.try_acquire().kind for _ in range(3)] == ["ok", "ok", "window"]


def test_fence_after_data_loss_with_a_surviving_limiter(own_redis):
    """Given limiters that granted a full window, then Redis SIGKILLed and restarted empty,
    expect the surviving objects (and new ones in this process) to grant nothing for one
    window, in every account and bucket: not only the first to meet the new instance."""
    server = own_redis()
    old = server.run_id()
    rate = RateSpec(3, 60_000)
    a_submit = make(server.client, rate, account="a")
    a_poll = make(server.client, rate, account="a", purpose="poll")
    b_submit = make(server.client, rate, account="b")
    for lim in (a_submit, a_poll, b_submit):
        assert [lim.try_acquire().kind for _ in range(4)] == ["ok", "ok", "ok", "window"]
    server.restart()
    assert server.run_id() != old and server.client.dbsize() == 0
    assert a_submit.try_acquire().kind == "fence"  # NOSCRIPT -> fence.lua -> fenced
    assert a_poll.try_acquire().kind == "fence"    # same account: its acquire is loaded now
    assert b_submit.try_acquire().kind == "fence"  # another account: its own sha, own fence
    late = make(server.client, rate, account="a")  # a new object in this surviving process
    assert late.try_acquire().kind == "fence"
    state = server.client.hgetall(a_submit.state_key)
    assert state["fence:why"] == "lost" and state["fence:previous"] == old
    assert state["server"] == server.run_id()


def test_fence_after_an_aof_restart(own_redis):
    """Given an AOF restart (the log may miss its last second), expect a fence, also for a
    limiter object made after the restart."""
    server = own_redis(appendonly=True)
    lim = make(server.client, RateSpec(3, 60_000), account="aof")
    assert lim.try_acquire().granted
    server.client.bgrewriteaof()  # whatever fsync policy: the state is on disk

    def rewritten():
        info = server.client.info("persistence")
        return info["aof_rewrite_in_progress"] == 0 and info["aof_rewrite_scheduled"] == 0

    wait_until(rewritten, 30, "aof rewrite")
    server.restart()
    assert server.client.hget(lim.state_key, "server") is not None  # restored
    fresh = make(server.client, RateSpec(3, 60_000), account="aof")
    assert fresh.try_acquire().kind == "fence" and lim.try_acquire().kind == "fence"
    assert server.client.hget(lim.state_key, "fence:why") == "moved"


def test_fence_after_a_failback_to_a_demoted_primary_that_kept_its_scripts(own_redis):
    """Given A primary, a switchover to B (A demoted: its process, and so its script cache,
    lives on), grants on B, then A promoted again, expect A's old acquire script (still cached
    there) to grant nothing until the fence decided on A has lasted a window."""
    a, b = own_redis(), own_redis()
    rate = RateSpec(3, 1000)
    on_a = make(a.client, rate, account="fb")
    assert on_a.try_acquire().granted
    sha_on_a = on_a._head[0]

    def follow(replica, primary):
        replica.client.replicaof("127.0.0.1", primary.port)
        wait_until(lambda: replica.client.info("replication")["master_link_status"] == "up",
                   30, "replication link")

    follow(b, a)
    b.client.replicaof("no", "one")  # switchover: B is the primary, A follows it
    follow(a, b)
    on_b = make(b.client, rate, account="fb")
    assert on_b.try_acquire().kind == "fence"  # the state names A
    assert on_b.acquire(max_wait_s=30).granted
    wait_until(lambda: a.client.hget(on_a.state_key, "server") == b.run_id(), 30, "replicated")
    a.client.replicaof("no", "one")  # failback
    assert a.client.script_exists(sha_on_a) == [True]  # A kept its script through it all
    refused = on_a.try_acquire()
    assert not refused.granted and refused.kind == "fence"
    assert a.client.hget(on_a.state_key, "fence:why") == "moved"


def test_an_instance_that_changes_during_the_fence_check_keeps_no_script(redis, monkeypatch):
    """Given INFO answering for one instance and the MULTI running on another (a failover in
    between), expect no acquire script left that names the first, and no grant."""
    lim = make(redis, RateSpec(3, 60_000), account="stray")
    other = "0" * 40
    monkeypatch.setattr(redis, "info", lambda *a, **k: {"run_id": other})
    refused = lim.try_acquire()
    assert not refused.granted and refused.kind == "fence" and refused.wait_s < 1
    stray_sha = lim._for_instance(other)[1][0]
    assert redis.script_exists(stray_sha) == [False]


def test_effective_limit_is_one_rule_in_python_and_in_the_scripts(redis):
    """limiter.effective_limit and acquire.lua's effective_limit (lua/_effective.lua) agree."""
    from backbeat.workers import scripts
    from backbeat.workers.limiter import effective_limit

    grid = [(limit, factor) for limit in (1, 2, 3, 7, 10, 20, 100, 1000)
            for factor in (0.001, 0.05, 1 / 3, 0.5, 0.7, 0.7 ** 2, 0.7 ** 5, 0.999, 1.0)]
    lua = scripts._included("effective") + """
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = effective_limit(tonumber(ARGV[i]), tonumber(ARGV[i + 1])) end
return out"""
    got = redis.eval(lua, 0, *[x for pair in grid for x in (pair[0], repr(pair[1]))])
    assert got == [effective_limit(limit, factor) for limit, factor in grid]
    assert "effective_limit(limit, factor)" in scripts.source("acquire")


def test_the_pump_reads_the_gates_through_the_limiter(redis):
    lim = make(redis, rate=RateSpec(10, 1000))
    now = server_ms(redis)
    assert lim.gate(now) == (False, False, 10)
    redis.hset(lim.state_key, "submit:factor", 0.55)
    assert lim.gate(now).effective_limit == 5 == lim.state()["effective_limit"]
    lim.pause("manual")
    assert lim.gate(now).closed
    lim.resume()
    redis.hset(lim.state_key, mapping={"breaker": "open", "breaker:until": now + 60_000})
    assert lim.gate(now).closed and lim.gate(now + 60_000) == (False, True, 5)


def _evalsha_calls(redis) -> int:
    return int(redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_normal_answer_travels_with_the_next_acquire(redis):
    """Given N grant + accepted-answer cycles, expect about one script call per cycle (the
    answer rides with the next acquire; only the flusher adds a few), and every answer
    applied: counted once, its entry lowered out of flight."""
    lim = make(redis, RateSpec(10_000, 60_000), account="cycle")
    cycles = 300
    before = _evalsha_calls(redis)
    started = time.monotonic()
    for _ in range(cycles):
        grant = lim.try_acquire()
        assert grant.granted
        assert lim.report(Outcome.ACCEPTED, grant) == "none"
    lim.flush()
    calls = _evalsha_calls(redis) - before
    # one acquire per cycle, plus at most one flush per FLUSH_S; a report.lua call per
    # answer would make it 2 x cycles
    flushes = (time.monotonic() - started) / FLUSH_S + 10
    assert calls <= cycles + flushes < 2 * cycles, (calls, flushes)
    state = redis.hgetall(lim.state_key)
    assert state["submit:calls:accepted"] == str(cycles)
    now_ms = server_ms(redis)
    assert redis.zcount(lim.log_key, f"({now_ms}", "+inf") == 0  # none still in flight


def test_a_held_answer_is_sent_without_another_acquire(redis):
    """Given one answered grant and no later acquire, expect the flusher to apply it."""
    lim = make(redis, RateSpec(2, 60_000), account="idle")
    grant = lim.try_acquire()
    lim.report(Outcome.ACCEPTED, grant)
    wait_until(lambda: redis.hget(lim.state_key, "submit:calls:accepted") == "1", 10,
               "the held answer sent")
    assert redis.zcount(lim.log_key, f"({server_ms(redis)}", "+inf") == 0


def test_answers_that_change_the_state_are_never_held(redis):
    lim = make(redis, RateSpec(5, 60_000), account="urgent")
    grant = lim.try_acquire()
    assert lim.report(Outcome.THROTTLED, grant) == "cut"  # at once, in this call
    assert redis.hget(lim.state_key, "submit:calls:throttled") == "1"


def test_an_unused_grant_gives_its_pacing_slot_back(redis):
    """Given a paced bucket (slots 2 s apart), expect a grant given back unused to leave
    the next slot free at once (a redelivered or taken job costs no slot)."""
    lim = make(redis, RateSpec(10, 20_000), burst=1, account="paced")
    assert lim.try_acquire().granted
    second = lim.acquire(max_wait_s=15)
    assert second.granted
    lim.release(second)
    third = lim.try_acquire()
    assert third.granted, third


def test_a_failed_flush_is_tried_again(redis):
    """Given a direct flush whose send fails after the flusher's own pass found nothing
    (the flush had taken the answers), expect the answers sent by the flusher later."""
    lim = make(redis, RateSpec(5, 60_000), account="retry")
    grant = lim.try_acquire()
    lim.report(Outcome.ACCEPTED, grant)
    send, failed = lim._settle, []

    def once_broken(**kw):
        if not failed:
            failed.append(1)
            time.sleep(0.3)  # the flusher's pass runs meanwhile and finds nothing held
            raise ConnectionError("redis went away")
        return send(**kw)

    lim._settle = once_broken
    with pytest.raises(ConnectionError):
        lim.flush()
    wait_until(lambda: redis.hget(lim.state_key, "submit:calls:accepted") == "1", 10,
               "the held answer sent after the failure")
