"""What record-info answers and stage callbacks report: the stage the task reached (a
``Stage``; workers/states.py's ``STAGE_STATE`` says which job state that is) and the fields that
go with it (docs/PROVIDER-CODES.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .callbacks import Callback, Stage
from .tracks import parse as parse_tracks

#: record-info status -> the stage it reports (None: nothing new)
STATUS_STAGE: dict[str, Stage | None] = {
    "PENDING": None,
    "TEXT_SUCCESS": Stage.TEXT,
    "FIRST_SUCCESS": Stage.FIRST,
    "SUCCESS": Stage.COMPLETE,
    "CREATE_TASK_FAILED": Stage.ERROR,
    "GENERATE_AUDIO_FAILED": Stage.ERROR,
    "SENSITIVE_WORD_ERROR": Stage.ERROR,
    # CALLBACK_EXCEPTION: complete when tracks exist, else an error (decided in from_record)
}


@dataclass(frozen=True)
class Update:
    """The stage a task reached (None: nothing new), with the fields that go with it."""

    stage: Stage | None
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


def from_record(data: Any, retention_days: float) -> Update:
    """Interpret a record-info ``data`` object (``retention_days``: the profile's
    ``track_retention_days``, for the tracks' ``expires_at``)."""
    if not isinstance(data, dict):
        return Update(None, "record-info without data")
    status = str(data.get("status") or "")
    items = parse_tracks(((data.get("response") or {}) or {}).get("sunoData"), retention_days)
    error_code, error_message = data.get("errorCode"), data.get("errorMessage")
    if error_code not in (None, "", 0):
        # the code names the failure; the status goes with it (CREATE_TASK_FAILED is
        # retryable whatever its code: the task was never created)
        failure = _failure(error_code, error_message or status, f"poll: {status} with errorCode")
        return Update(failure.stage, failure.reason, {**failure.fields, "upstream_status": status})
    if status == "CALLBACK_EXCEPTION":
        if items:
            return Update(Stage.COMPLETE, "poll: CALLBACK_EXCEPTION with tracks",
                          _track_fields(items))
        return _failure(status, error_message or "callback exception without tracks", "poll")
    if status not in STATUS_STAGE:
        return Update(None, f"poll: unknown status {status!r}")
    stage = STATUS_STAGE[status]
    if stage is Stage.ERROR:
        return _failure(status, error_message or status, f"poll: {status}")
    fields = _track_fields(items) if items else {}
    return Update(stage, f"poll: {status}", fields)


def from_callback(callback: Callback, retention_days: float) -> Update:
    """Interpret a usable stage callback (callbacks.py ``read_callback``). An ``error`` stage
    without a code fails with the code "error"."""
    kind, code = callback.kind, callback.code
    if kind is Stage.ERROR or code not in (None, 200):
        return _failure("error" if code is None else code, callback.msg or "generation failed",
                        f"callback: {kind}")
    items = parse_tracks(callback.items, retention_days)
    return Update(kind, f"callback: {kind}", _track_fields(items) if items else {})


def _track_fields(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tracks": json.dumps(items, separators=(",", ":"))}


def _failure(code: Any, message: Any, reason: str) -> Update:
    return Update(Stage.ERROR, reason,
                  {"error_code": str(code), "error_message": str(message)[:500]})
