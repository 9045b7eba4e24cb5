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
    assert again.params == {"title": "a"} == job.params  # the replay shows the job's params
    assert redis.exists("bb:job:j2") == 0
    with pytest.raises(IdempotencyConflict) as info:
        store.create("j3", "add-vocals", {"title": "b"}, idempotency_key="k")
    assert info.value.job_id == "j1"
    assert redis.zscore("bb:state:queued", "j1") is not None
    assert redis.zscore("bb:outbox", "j1") and redis.zscore("bb:deadline", "j1")


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
    assert redis.zscore("bb:state:queued", "j") is None and redis.zscore("bb:poll", "j")
    assert redis.zscore("bb:state:submitted", "j")
    store.transition("j", S.FAILED, "boom", fields={"error_code": "501"})
    assert redis.zscore("bb:poll", "j") is None and redis.zscore("bb:deadline", "j") is None
    assert redis.zscore("bb:state:failed", "j") and redis.zscore("bb:state:submitted", "j") is None
    assert 0 < redis.pttl("bb:job:j") <= 60_000 and 0 < redis.pttl("bb:hist:j") <= 60_000
    assert [(h["from"], h["to"]) for h in store.history("j")][-1] == ("submitted", "failed")
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


def test_retry_is_the_one_way_out_of_failed(store, redis):
    store.create("j", "add-vocals", {}, deadline_ms=60_000)
    assert not store.transition("j", S.QUEUED, "x", retry=True).applied  # not failed yet
    store.transition("j", S.FAILED, "boom", fields={"error_code": "500"})
    assert not store.transition("j", S.QUEUED, "plain move").applied
    result = store.transition("j", S.QUEUED, "retry", retry=True,
                              fields={"-error_code": "", "+retries": 1})
    assert result.applied and result.before is S.FAILED
    job = store.get("j")
    assert job.state is S.QUEUED and job.get("error_code") == "" and job.int("retries") == 1
    assert redis.pttl("bb:job:j") == -1 and redis.zscore("bb:deadline", "j")
    store.transition("j", S.SUCCEEDED, "done")
    assert not store.transition("j", S.QUEUED, "retry", retry=True).applied  # only failures


def test_terminal_job_with_notify_url_is_scheduled_for_its_webhook(store, redis):
    store.create("a", "add-vocals", {}, notify_url="https://hooks.example.com/x")
    store.create("b", "add-vocals", {})
    for job_id in ("a", "b"):
        store.transition(job_id, S.CANCELLED, "caller")
    assert redis.zrange("bb:notify", 0, -1) == ["a"]
    assert store.get("a").to_public()["notify"]["state"] == "pending"


def test_listing_pages_newest_first_with_filters(store):
    for n in range(7):
        store.create(f"j{n}", "add-vocals" if n % 2 else "add-instrumental", {})
    store.transition("j3", S.CANCELLED, "x")
    seen, cursor = [], None
    while True:
        page, cursor = store.list(limit=3, cursor=cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert sorted(seen) == [f"j{n}" for n in range(7)] and len(seen) == 7
    vocals, _ = store.list(job_type="add-vocals", limit=10)
    assert sorted(j.id for j in vocals) == ["j1", "j3", "j5"]
    cancelled, more = store.list(state=S.CANCELLED)
    assert [j.id for j in cancelled] == ["j3"] and more is None
    with pytest.raises(ValueError):
        store.list(cursor="!!not-a-cursor!!")


def test_add_duplicate_records_foreign_tasks_once(store, redis):
    store.create("j", "add-vocals", {})
    assert store.add_duplicate("j", "A")  # no task of its own yet: a superseded attempt's
    store.transition("j", S.SUBMITTING, "go")
    store.transition("j", S.SUBMITTED, "ok", fields={"upstream_task_id": "B"})
    assert not store.add_duplicate("j", "B") and not store.add_duplicate("j", "A")
    assert store.add_duplicate("j", "C")
    job = store.get("j")
    assert job.upstream_task_id == "B" and job.to_public()["duplicate_task_ids"] == ["A", "C"]
    assert redis.get("bb:metrics:duplicate_upstream_tasks") == "2"
    assert not store.add_duplicate("missing", "X")


def test_stranded_queued_jobs_are_parked_once(store, redis):
    """A queued job whose message was lost is parked (the pump re-sends it); each job is
    examined once, and jobs still in the outbox or already parked are left alone."""
    for job_id in ("lost", "outboxed", "parked"):
        store.create(job_id, "add-vocals", {})
    store.dispatched("lost")
    store.dispatched("parked")
    store.park("parked", delay_ms=60_000)
    before = redis.zscore("bb:parked", "parked")
    cutoff = store.now_ms() + 1
    assert store.rescue_stranded(cutoff, batch=10) == 1
    assert redis.zscore("bb:parked", "lost") is not None
    assert redis.zscore("bb:parked", "outboxed") is None
    assert redis.zscore("bb:parked", "parked") == before
    redis.zrem("bb:parked", "lost")
    assert store.rescue_stranded(cutoff, batch=10) == 0  # already examined
    __import__("time").sleep(0.01)  # enters queued after that cutoff
    store.create("later", "add-vocals", {})
    store.dispatched("later")
    assert store.rescue_stranded(store.now_ms() + 1, batch=10) == 1


def test_stranded_scan_resumes_after_a_full_batch(store, redis):
    for n in range(5):
        store.create(f"j{n}", "add-vocals", {})
        store.dispatched(f"j{n}")
    cutoff = store.now_ms() + 1
    total = sum(store.rescue_stranded(cutoff, batch=2) for _ in range(6))
    assert total == 5 and redis.zcard("bb:parked") == 5


def test_resubmit_takes_an_in_flight_job_back_to_queued_parked_in_one_step(store, redis):
    store.create("j", "add-vocals", {})
    assert not store.transition("j", S.QUEUED, "early", resubmit=True).applied  # not in flight
    store.transition("j", S.SUBMITTING, "submit", fields={"attempt_id": "a"})
    store.transition("j", S.SUBMITTED, "ok", poll_delay_ms=1000, fields={"upstream_task_id": "t1"})
    assert redis.zscore("bb:poll", "j") is not None
    moved = store.transition("j", S.QUEUED, "retryable failure", resubmit=True,
                             fields={"-upstream_task_id": "", "previous_task_ids": "t1"})
    assert moved.applied and moved.before is S.SUBMITTED
    job = store.get("j")
    assert job.state is S.QUEUED and job.upstream_task_id is None
    assert job.previous_task_ids == ["t1"]
    assert redis.zscore("bb:poll", "j") is None and redis.zscore("bb:parked", "j") is not None
    assert redis.zscore("bb:notify", "j") is None  # nothing ended: nobody is notified
    store.transition("j", S.FAILED, "final")
    assert not store.transition("j", S.QUEUED, "again", resubmit=True).applied  # terminal


def test_params_live_beside_the_record_and_expire_with_it(store, redis):
    """Given a new job, expect its params in their own key (the record stays a listpack),
    read back with the record, no stored history before its first move, and the params
    expiring with the record when the job ends."""
    store.create("p1", "add-vocals", {"title": "x" * 200})
    assert "params" not in redis.hgetall("bb:job:p1")
    assert redis.object("encoding", "bb:job:p1") == "listpack"
    assert store.get("p1").params == {"title": "x" * 200}
    assert redis.exists("bb:hist:p1") == 0
    assert [e["to"] for e in store.history("p1")] == ["queued"]
    assert store.transition("p1", S.CANCELLED, "bye").applied
    assert [e["to"] for e in store.history("p1")] == ["queued", "cancelled"]
    assert 0 < redis.pttl("bb:params:p1") <= 60_000 and redis.pttl("bb:job:p1") > 0
