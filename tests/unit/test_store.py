"""Job store on a real Redis: idempotent create, forward-only transitions, events, indexes."""

import pytest

from backbeat.workers.errors import IdempotencyConflict
from backbeat.workers.keys import Keys
from backbeat.workers.states import JobState
from backbeat.workers.store import JobStore

S = JobState


@pytest.fixture
def store(redis):
    return JobStore(redis, Keys("bb"), retention_ms=60_000)


def test_create_is_idempotent_per_key(store, redis):
    job, created = store.create("j1", "add-vocals", {"title": "a"}, idempotency_key="k")
    assert created and job.state is S.QUEUED
    again, created = store.create("j2", "add-vocals", {"title": "a"}, idempotency_key="k")
    assert not created and again.id == "j1"
    assert redis.exists("bb:job:j2") == 0
    with pytest.raises(IdempotencyConflict) as info:
        store.create("j3", "add-vocals", {"title": "b"}, idempotency_key="k")
    assert info.value.job_id == "j1"
    assert redis.zscore("bb:queued", "j1") is not None


def test_transitions_only_move_forward(store):
    store.create("j", "add-vocals", {})
    assert store.transition("j", S.SUBMITTING, "go", fields={"attempt_id": "a1"}).applied
    assert store.transition("j", S.SUBMITTED, "ok", require_attempt="a1",
                            fields={"upstream_task_id": "T1"}).applied
    assert store.transition("j", S.FIRST_READY, "cb").applied
    # late and repeated answers never regress the job
    for late in (S.TEXT_READY, S.SUBMITTED, S.QUEUED, S.FIRST_READY, S.SUBMITTING):
        result = store.transition("j", late, "late")
        assert not result.applied and result.before is S.FIRST_READY
    assert store.transition("j", S.SUCCEEDED, "done").applied
    for anything in S:
        assert not store.transition("j", anything, "after the end").applied
    assert store.get("j").state is S.SUCCEEDED


def test_submitting_may_return_to_queued_only_for_its_attempt(store):
    store.create("j", "add-vocals", {})
    store.transition("j", S.SUBMITTING, "go", fields={"attempt_id": "a1", "+attempts": 1})
    assert not store.transition("j", S.QUEUED, "x", require_attempt="other").applied
    assert store.transition("j", S.QUEUED, "throttled", require_attempt="a1",
                            require_from=S.SUBMITTING).applied
    assert store.get("j").int("attempts") == 1


def test_cancel_only_before_submission(store):
    store.create("a", "add-vocals", {})
    assert store.transition("a", S.CANCELLED, "caller", require_from=S.QUEUED).applied
    store.create("b", "add-vocals", {})
    store.transition("b", S.SUBMITTING, "go")
    assert not store.transition("b", S.CANCELLED, "caller").applied


def test_second_upstream_task_is_recorded_not_overwritten(store):
    store.create("j", "add-vocals", {})
    store.transition("j", S.SUBMITTING, "go")
    store.transition("j", S.SUBMITTED, "ok", fields={"upstream_task_id": "T1"})
    store.transition("j", S.TEXT_READY, "x", fields={"upstream_task_id": "T2"})
    job = store.get("j")
    assert job.upstream_task_id == "T1"
    assert job.to_public()["duplicate_task_ids"] == ["T2"] and job.int("dup_count") == 1


def test_events_and_indexes_follow_transitions(store, redis):
    store.create("j", "add-vocals", {})
    store.transition("j", S.SUBMITTING, "go")
    store.transition("j", S.SUBMITTED, "ok", poll_delay_ms=5000,
                     fields={"upstream_task_id": "T"})
    assert redis.zscore("bb:queued", "j") is None and redis.zscore("bb:poll", "j")
    store.transition("j", S.FAILED, "boom", fields={"error_code": "501"})
    assert redis.zscore("bb:poll", "j") is None
    assert 0 < redis.pttl("bb:job:j") <= 60_000
    moves = [(e["from"], e["to"]) for _, e in store.read_events("0-0")]
    assert moves == [("", "queued"), ("queued", "submitting"), ("submitting", "submitted"),
                     ("submitted", "failed")]
    assert store.get("j").to_public()["error"] == {"code": 501, "message": ""}


def test_claim_due_leases_members(store, redis):
    redis.zadd("bb:poll", {"a": 0, "b": 0, "c": 10**15})
    first = store.claim_due("bb:poll", 10, lease_ms=60_000)
    assert sorted(first) == ["a", "b"]
    assert store.claim_due("bb:poll", 10, lease_ms=60_000) == []  # leased: nobody else sees them


def test_missing_job(store):
    assert store.get("nope") is None
    assert not store.transition("nope", S.SUBMITTING, "x").applied
