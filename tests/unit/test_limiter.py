"""The adaptive limiter on a real Redis: exact window, AIMD, breaker, pause (server clock)."""

import threading
import time

import pytest

from backbeat.config.providers import Outcome
from backbeat.config.settings import RateSpec
from backbeat.simulator.ledger import max_in_window
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
