"""Requeue and park are one step: a worker killed right after a job goes back to ``queued``
leaves it parked, so the pump sends it again (before, the park was a second round trip and a
death between the two left the job queued with no message and no parked entry until the
rescue sweep, a visibility timeout later).

Each case runs the real code path in its own Python process, which SIGKILLs itself the moment
the transition to ``queued`` returns (the place the old second step came after), then reads
Redis as the rest of the fleet would.
"""

import signal
import subprocess
import sys
import textwrap

import pytest

from backbeat.workers.keys import Keys
from backbeat.workers.states import JobState
from backbeat.workers.store import JobStore

WORKER = textwrap.dedent("""
    import os, signal, sys
    from backbeat.config.settings import Settings
    from backbeat.provider.client import Answer
    from backbeat.provider.profiles import Outcome
    from backbeat.workers import jobs, reconcile, submission
    from backbeat.workers.runtime import Runtime
    from backbeat.workers.store import JobStore

    real = JobStore.transition

    def transition_then_die(self, job_id, to, *args, **kwargs):
        result = real(self, job_id, to, *args, **kwargs)
        if result.applied and to == "queued":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    JobStore.transition = transition_then_die
    case, job_id = sys.argv[1], sys.argv[2]
    rt = Runtime(Settings.from_env())
    if case == "transient":
        submission.record_answer(rt, job_id, "a1", Answer(Outcome.TRANSIENT, 500, "boom"))
    elif case == "paused":
        submission.record_answer(rt, job_id, "a1", Answer(Outcome.CREDITS, 429, "no credits"))
    elif case == "uncertain":
        reconcile.settle_uncertain(rt, reconcile.CycleReport(), 10)
    elif case == "retry":
        jobs.retry(rt, job_id)
    print("survived")
""")


def _submitting(store: JobStore, job_id: str) -> None:
    store.create(job_id, "add-vocals", {"title": "t"})
    assert store.transition(job_id, JobState.SUBMITTING, "submit",
                            fields={"attempt_id": "a1", "+attempts": 1}).applied


def _setup(case: str, store: JobStore, job_id: str) -> None:
    _submitting(store, job_id)
    if case == "uncertain":  # the grace ended without a callback: resubmit policy requeues it
        assert store.annotate(job_id, {"uncertain": "1"}, require_state=JobState.SUBMITTING,
                              uncertain_delay_ms=0)
    if case == "retry":  # a dead letter the caller sends round again
        assert store.transition(job_id, JobState.FAILED, "rejected").applied


@pytest.mark.integration
@pytest.mark.parametrize("case", ["transient", "paused", "uncertain", "retry"])
def test_a_worker_killed_right_after_the_requeue_leaves_the_job_parked(redis, case):
    store = JobStore(redis, Keys("bb"))
    job_id = f"atomic-{case}"
    _setup(case, store, job_id)
    proc = subprocess.run([sys.executable, "-c", WORKER, case, job_id], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)
    job = store.get(job_id)
    assert job is not None and job.state is JobState.QUEUED
    assert redis.zscore(store.keys.parked, job_id) is not None, "queued, not parked: stranded"
