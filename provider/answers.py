"""What upstream status answers and stage callbacks mean for a job (DESIGN.md sections 2, 6)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..workers.states import JobState
from . import tracks as track_parsing

#: record-info status -> job state (None: nothing new)
STATUS_STATE: dict[str, JobState | None] = {
    "PENDING": None,
    "TEXT_SUCCESS": JobState.TEXT_READY,
    "FIRST_SUCCESS": JobState.FIRST_READY,
    "SUCCESS": JobState.SUCCEEDED,
    "CREATE_TASK_FAILED": JobState.FAILED,
    "GENERATE_AUDIO_FAILED": JobState.FAILED,
    "SENSITIVE_WORD_ERROR": JobState.FAILED,
    # CALLBACK_EXCEPTION: success when tracks exist, else failure (decided in from_record)
}

#: callback ``callbackType`` -> job state
CALLBACK_STATE: dict[str, JobState] = {
    "text": JobState.TEXT_READY,
    "first": JobState.FIRST_READY,
    "complete": JobState.SUCCEEDED,
    "error": JobState.FAILED,
}

@dataclass(frozen=True)
class Update:
    """A state the job should move to, with the fields that go with it."""

    state: JobState | None
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


def tracks(items: Any, retention_days: float | None = None) -> list[dict[str, Any]]:
    """Normalise provider track items (either spelling) to caller-facing dicts, every field
    kept (provider/tracks.py)."""
    return track_parsing.parse(items, retention_days)


def from_record(data: Any) -> Update:
    """Interpret a record-info ``data`` object."""
    if not isinstance(data, dict):
        return Update(None, "record-info without data")
    status = str(data.get("status") or "")
    items = tracks(((data.get("response") or {}) or {}).get("sunoData"))
    error_code, error_message = data.get("errorCode"), data.get("errorMessage")
    if error_code not in (None, "", 0):
        # the code names the failure; the status goes with it (CREATE_TASK_FAILED is
        # retryable whatever its code: the task was never created)
        failure = _failure(error_code, error_message or status, f"poll: {status} with errorCode")
        return Update(failure.state, failure.reason, {**failure.fields, "upstream_status": status})
    if status == "CALLBACK_EXCEPTION":
        if items:
            return Update(JobState.SUCCEEDED, "poll: CALLBACK_EXCEPTION with tracks",
                          _track_fields(items))
        return _failure(status, error_message or "callback exception without tracks", "poll")
    if status not in STATUS_STATE:
        return Update(None, f"poll: unknown status {status!r}")
    state = STATUS_STATE[status]
    if state is JobState.FAILED:
        return _failure(status, error_message or status, f"poll: {status}")
    fields = _track_fields(items) if items else {}
    return Update(state, f"poll: {status}", fields)


def from_callback(body: dict[str, Any],
                  retention_days: float | None = None) -> tuple[str | None, Update]:
    """Interpret a validated stage callback body; returns (upstream task id, update)."""
    data = body.get("data") or {}
    kind = data.get("callbackType")
    task_id = data.get("task_id") or data.get("taskId")
    code = body.get("code")
    if kind == "error" or (code not in (None, 200)):
        return task_id, _failure(code, body.get("msg") or "generation failed", f"callback: {kind}")
    items = tracks(data.get("data"), retention_days)
    return task_id, Update(CALLBACK_STATE[kind], f"callback: {kind}",
                           _track_fields(items) if items else {})


def _track_fields(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tracks": json.dumps(items, separators=(",", ":"))}


def _failure(code: Any, message: Any, reason: str) -> Update:
    return Update(JobState.FAILED, reason,
                  {"error_code": str(code), "error_message": str(message)[:500]})
