"""Job leases on a real Redis: take, renew, release, and reclaim from a dead node."""

import time

import pytest

from backbeat.workers.keys import Keys
from backbeat.workers.leases import Leases
from backbeat.workers.states import JobState
from backbeat.workers.store import JobStore

S = JobState


@pytest.fixture
def store(redis):
    return JobStore(redis, Keys("bb"), retention_ms=60_000)


@pytest.fixture
def leases(redis):
    return Leases(redis, Keys("bb"), ttl_s=0.3)


def expire(redis, job_id: str) -> None:
    """Make a lease end now (as if its node had stopped renewing it a while ago)."""
    redis.zadd("bb:leases", {job_id: 0}, xx=True)


def test_renew_extends_only_the_holders_own_leases(leases, redis):
    leases.take("n1@h", [("j1", "tag-1"), ("j2", "tag-2")])
    before = redis.zscore("bb:leases", "j1")
    time.sleep(0.05)
    assert leases.renew("n1@h", ["j1", "j3"]) == 1  # j3 was never leased: not recreated
    assert redis.zscore("bb:leases", "j1") > before and redis.zscore("bb:leases", "j3") is None
    assert leases.renew("n2@h", ["j2"]) == 0  # another node's lease is not its to renew
    assert leases.holder("j2") == "n1@h"


def test_release_drops_only_a_lease_the_node_still_holds(leases, redis):
    leases.take("n1@h", [("j1", "t1")])
    leases.take("n2@h", [("j1", "t2")])  # redelivered to n2 meanwhile
    leases.release("n1@h", "j1")
    assert leases.holder("j1") == "n2@h"
    leases.release("n2@h", "j1")
    assert leases.holder("j1") is None and redis.zscore("bb:leases", "j1") is None
    assert leases.renew("n2@h", ["j1"]) == 0  # a late heartbeat never brings it back


def test_a_live_lease_is_never_reclaimed(leases, store):
    store.create("j1", "add-vocals", {})
    leases.take("n1@h", [("j1", "t1")])
    assert leases.reclaim_expired(grace_ms=1000) == []


def test_a_dead_nodes_queued_job_is_reclaimed_once_and_its_message_restored(leases, store, redis):
    store.create("j1", "add-vocals", {})
    leases.take("n1@h", [("j1", "tag-1")])
    expire(redis, "j1")
    restored = []
    taken = leases.reclaim_expired(grace_ms=1000, restore=restored.append)
    assert [(r.job_id, r.state, r.node, r.tag) for r in taken] == [("j1", "queued", "n1@h",
                                                                    "tag-1")]
    assert restored == ["tag-1"]
    # parked too, leased: the pump's fallback if the message could not be put back
    assert redis.zscore("bb:parked", "j1") > store.now_ms() + 60_000
    assert store.history("j1")[-1]["reason"] == "reclaimed: lease of n1@h expired"
    assert store.get("j1").int("reclaims") == 1
    assert leases.reclaim_expired(grace_ms=1000, restore=restored.append) == []  # once only
    assert restored == ["tag-1"]


def test_a_dead_nodes_job_mid_call_becomes_uncertain_never_requeued(leases, store, redis):
    store.create("j1", "add-vocals", {})
    store.transition("j1", S.SUBMITTING, "submit", fields={"attempt_id": "a1"})
    leases.take("n1@h", [("j1", "tag-1")])
    expire(redis, "j1")
    taken = leases.reclaim_expired(grace_ms=300_000)
    assert [r.state for r in taken] == ["submitting"]
    job = store.get("j1")
    assert job.state is S.SUBMITTING and job.get("uncertain") == "1"
    began = job.int("submitting_at")
    assert redis.zscore("bb:uncertain", "j1") == began + 300_000  # grace from the call's start
    assert redis.zscore("bb:parked", "j1") is None


def test_a_lease_on_a_job_that_moved_on_is_only_dropped(leases, store, redis):
    store.create("j1", "add-vocals", {})
    store.transition("j1", S.SUBMITTING, "submit", fields={"attempt_id": "a1"})
    store.transition("j1", S.SUBMITTED, "accepted", fields={"upstream_task_id": "t"})
    leases.take("n1@h", [("j1", "tag-1")])
    expire(redis, "j1")
    restored = []
    assert leases.reclaim_expired(grace_ms=1000, restore=restored.append) == []
    assert restored == [] and redis.zscore("bb:leases", "j1") is None
    assert store.get("j1").get("reclaims") == ""
