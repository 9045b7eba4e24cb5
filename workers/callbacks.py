"""Provider stage callbacks applied to a job: adopt the upstream task, apply the transition.

A callback reaches here only once its signature was checked (routes_ops.py), so it is answered
200 whatever its shape: what cannot be used is logged and ignored, as a provider retrying a
callback we cannot read gains nothing. The shapes accepted, and how they are read, are in
provider/callbacks.py; what each stage means for a job, in provider/answers.py.

Ownership: the job's upstream task is the first one a transition records (``upstream_task_id``);
a callback of another task never moves the job (it is recorded in ``duplicate_task_ids``), nor
does one of a task an earlier round made (``previous_task_ids``, before a caller retry). A job
with no task yet first adopts the callback's task (-> ``submitted``, ``upstream_task_id`` set,
``adopted``), then the stage applies as for any submitted job, so every state a callback moves
the job to has the task polling needs:

- ``submitting`` (the call is uncertain, or its answer not recorded yet): adopted;
- ``queued`` (the uncertain grace put the attempt back, a reclaim, or a transient answer hid a
  task the provider did create): adopted too (``adopted_late``), and the job is not submitted
  again: the message that would resubmit it finds it out of ``queued`` and never calls the
  provider (exactly once). An ``error`` callback adopted this way is a failure of a submitted
  task like any other (failed, or resubmitted when the provider calls its code retryable);
- a terminal job (failed by the ``fail`` policy, cancelled, expired): not moved; the task is
  recorded as a duplicate (paid, never this job's result).

Each transition is conditional on the state and attempt read with the job, so a callback racing
the provider's answer (or a poll) is re-read and decided again, never applied on stale facts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from ..provider import answers as upstream
from ..provider.callbacks import read_callback
from .reconcile import next_poll_delay_ms
from .regeneration import apply_reported
from .runtime import Runtime
from .states import RANK, STAGE_STATE, JobState
from .store import Job

log = logging.getLogger(__name__)

#: times a callback is re-read and decided again (after adopting, or losing a race)
ROUNDS = 5
#: what _apply_once returns when the job just adopted the callback's task
ADOPTED = "adopted"


@dataclass(frozen=True)
class CallbackResult:
    """What a callback changed: ``applied`` false for repeats, late or out-of-order stages,
    other tasks, and bodies that could not be used (``note`` says which)."""

    applied: bool
    state: str
    adopted: bool = False
    note: str = ""


def apply_callback(rt: Runtime, job_id: str, payload: Any) -> CallbackResult:
    """Read and apply one callback for a job whose signature was already checked; never raises
    for the body's shape (see the module docstring)."""
    store = rt.store
    job = store.get(job_id)
    if job is None:
        log.warning("callback for job %s ignored: no such job (expired or never created)",
                    job_id)
        return CallbackResult(False, "", note="no such job")
    cb = read_callback(payload)
    if cb.problems:
        log.warning("job %s: callback %s: %s", job_id, "partly used" if cb.usable else "ignored",
                    "; ".join(cb.problems))
    if not cb.usable:
        store.annotate(job_id, {"+callbacks_ignored": 1})
        return CallbackResult(False, job.state.value, note="ignored: " + "; ".join(cb.problems))
    update = upstream.from_callback(cb, rt.profile_of(job).track_retention_days)
    adopted = False
    for _ in range(ROUNDS):
        result = _apply_once(rt, job, cb.task_id or "", update)
        if isinstance(result, CallbackResult):
            return replace(result, applied=result.applied or adopted, adopted=adopted)
        adopted = adopted or result == ADOPTED
        job = store.get(job_id)  # adopted, or lost a race: decide again on the job as it is
        if job is None:
            return CallbackResult(False, "", note="no such job")
    return CallbackResult(adopted, job.state.value, adopted=adopted, note="raced")


def _apply_once(rt: Runtime, job: Job, task_id: str,
                update: upstream.Update) -> CallbackResult | str | None:
    """Decide and apply on ``job`` as read: a result, ADOPTED (the job took the task: apply
    the stage next), or None when a conditional transition lost a race."""
    store, state = rt.store, job.state
    if task_id in job.previous_task_ids:
        # a late callback of the task an earlier round made (the job was retried since): it
        # says nothing about this round, and must not be adopted as this round's task
        log.info("job %s: callback of earlier task %s ignored", job.id, task_id)
        return CallbackResult(False, state.value, note="task of an earlier round")
    own = job.upstream_task_id
    if own and own != task_id:
        if store.add_duplicate(job.id, task_id):
            log.warning("job %s: second upstream task %s recorded as duplicate", job.id, task_id)
        return CallbackResult(False, state.value, note="not this job's task")
    if own is None:
        if state.terminal:
            if store.add_duplicate(job.id, task_id):
                log.warning("job %s: task %s called back after the job ended %s: duplicate",
                            job.id, task_id, state.value)
            return CallbackResult(False, state.value, note="job ended before its task")
        # adopt first (as the provider's answer would have), then apply the stage below, so
        # an adopted failure is handled as any failure of a submitted task
        fields = {"upstream_task_id": task_id, "adopted": "1"}
        if state is JobState.QUEUED:
            fields["adopted_late"] = "1"
        moved = store.transition(job.id, JobState.SUBMITTED,
                                 f"adopted from callback (job was {state.value})",
                                 require_from=state, require_attempt=job.get("attempt_id") or None,
                                 fields=fields,
                                 poll_delay_ms=int(rt.settings.poll_min_delay_s * 1000))
        if moved.applied:
            log.info("job %s: adopted upstream task %s from a callback while %s", job.id,
                     task_id, state.value)
            return ADOPTED
        return None
    to = STAGE_STATE[update.stage] if update.stage is not None else None
    if state.terminal or to is None or RANK[to] <= RANK[state]:
        # a repeat or an earlier stage: nothing moves, but its track fields are kept
        if update.fields.get("tracks"):
            store.complete_tracks(job.id, task_id, json.loads(update.fields["tracks"]))
        store.annotate(job.id, {"callbacks": "1", "+callbacks_received": 1})
        return CallbackResult(False, state.value)
    fields = {**update.fields, "callbacks": "1", "+callbacks_received": 1}
    age_ms = store.now_ms() - job.int("created_at")
    moved = apply_reported(rt, job, to, update.reason, fields,
                           poll_delay_ms=next_poll_delay_ms(rt, age_ms, callbacks_seen=True))
    if not moved.applied:
        return None
    now = store.get(job.id)
    return CallbackResult(True, now.state.value if now else to.value)


__all__ = ["CallbackResult", "apply_callback"]
