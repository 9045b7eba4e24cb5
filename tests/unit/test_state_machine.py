"""The state machine is defined once (workers/states.py): the Lua scripts get its tables at load
time, and every move the scripts make or refuse is the move ``states.allowed`` says."""

import itertools
import re
from importlib.resources import files

import pytest

from backbeat.workers import scripts
from backbeat.workers.keys import Keys
from backbeat.workers.states import ORDER, TERMINAL, JobState, Mode, allowed
from backbeat.workers.store import JobStore

LUA = files("backbeat.workers").joinpath("lua")


@pytest.fixture
def store(redis):
    return JobStore(redis, Keys("bb"), retention_ms=60_000)


def _put_in(store: JobStore, redis, job_id: str, state: JobState) -> None:
    """A job sitting in ``state``, its index entry with it (set directly: the setup is not
    what is under test)."""
    store.create(job_id, "add-vocals", {})
    redis.zrem(store.keys.state("queued"), job_id)
    redis.hset(store.keys.job(job_id), "state", state.value)
    redis.zadd(store.keys.state(state.value), {job_id: 1})


@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.name.lower())
def test_every_move_the_script_makes_is_the_one_python_allows(store, redis, mode):
    pairs = list(itertools.product(ORDER, ORDER))
    for n, (cur, to) in enumerate(pairs):
        job_id = f"m{n}"
        _put_in(store, redis, job_id, cur)
        result = store.transition(job_id, to, "test", retry=mode is Mode.RETRY,
                                  resubmit=mode is Mode.RESUBMIT)
        assert result.applied == allowed(cur, to, mode), (cur, to, mode)
        now = JobState(redis.hget(store.keys.job(job_id), "state"))
        assert now is (to if result.applied else cur)
        assert redis.zscore(store.keys.state(now.value), job_id) is not None
        others = [s for s in ORDER if s is not now]
        assert not any(redis.zscore(store.keys.state(s.value), job_id) for s in others)


def test_the_machine_reads_as_documented():
    """A few moves spelled out, so a change to the tables is a visible decision."""
    S = JobState
    assert allowed(S.QUEUED, S.SUBMITTING) and allowed(S.SUBMITTING, S.QUEUED)
    assert allowed(S.QUEUED, S.CANCELLED) and not allowed(S.SUBMITTED, S.CANCELLED)
    assert not allowed(S.FIRST_READY, S.TEXT_READY) and allowed(S.TEXT_READY, S.SUCCEEDED)
    assert not any(allowed(t, S.QUEUED) for t in TERMINAL)
    assert allowed(S.FAILED, S.QUEUED, Mode.RETRY) and not allowed(S.SUCCEEDED, S.QUEUED,
                                                                    Mode.RETRY)
    assert allowed(S.FIRST_READY, S.QUEUED, Mode.RESUBMIT)
    assert not allowed(S.SUBMITTING, S.QUEUED, Mode.RESUBMIT)


def test_the_scripts_hold_no_state_table_of_their_own():
    names = sorted(p.name[:-4] for p in LUA.iterdir() if p.name.endswith(".lua"))
    assert sorted(scripts.NAMES) == [n for n in names if not n.startswith("_")]
    table = re.compile(r"local (STATES|RANK|TOP|TERMINAL)\b|\{\s*'queued'|"
                       + "|".join(rf"\b{s.value}\s*=\s*(true|\d)" for s in ORDER))
    for name in scripts.NAMES:
        text = scripts.source(name)
        assert not re.search(r"^--#include", text, re.MULTILINE), name
        raw = LUA.joinpath(f"{name}.lua").read_text()
        if "--#include states" in raw:
            # the tables come from states.py, none is written in the script
            assert not table.search(raw), name
            assert "local STATES = {'queued', 'submitting'" in text


def test_a_duplicate_task_is_counted_once_by_either_script(store, redis):
    store.create("d", "add-vocals", {})
    store.transition("d", JobState.SUBMITTING, "go")
    store.transition("d", JobState.SUBMITTED, "ok", fields={"upstream_task_id": "T1"})
    for _ in range(2):  # the same newcomer twice through each script
        store.transition("d", JobState.TEXT_READY, "cb", fields={"upstream_task_id": "T2"})
        store.add_duplicate("d", "T2")
    store.add_duplicate("d", "T3")
    job = redis.hgetall(store.keys.job("d"))
    assert job["upstream_task_id"] == "T1"
    assert job["dup_task_ids"] == "T2,T3" and job["dup_count"] == "2"
    assert redis.get(store.keys.metric("duplicate_upstream_tasks")) == "2"


def test_every_state_a_script_names_is_a_state():
    """Scripts that compare or set a state by name (create_job, reclaim, transition, ...) name
    only states workers/states.py defines, so renaming one there cannot leave a script behind."""
    named = re.compile(r"\b(?:state|cur|to)\s*(?:[~=]=|=)\s*'(\w+)'|'(?:state|to)',\s*'(\w+)'")
    seen = set()
    for name in scripts.NAMES:
        for match in named.finditer(scripts.source(name)):
            seen.add(match.group(1) or match.group(2))
    assert seen and seen <= {s.value for s in ORDER}, seen - {s.value for s in ORDER}
    assert {"queued", "submitting", "cancelled"} <= seen
