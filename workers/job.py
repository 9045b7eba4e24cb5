"""A job: its record as read from Redis, and what callers see of it.

``PUBLIC_JOB`` is the one definition of a job as callers see it (HTTP API, webhooks, Python
client): each field with how it is read from the record and its schema field. ``Job.to_public``
reads it, and the API's ``JobOut`` schema is built from it, with the track fields of
provider/tracks.py (``TrackOut``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from marshmallow import Schema, fields, post_dump

from ..provider.tracks import FIELDS as TRACK_FIELDS
from .states import JobState

#: every job state, in order (the ``state`` of a job, and a listing's filter)
STATES = [state.value for state in JobState]
#: where a job's webhook stands (``notify.state``)
NOTIFY_STATES = ["waiting", "pending", "retrying", "delivered", "failed"]


@dataclass(frozen=True)
class Job:
    """One job record as read from Redis; ``to_public()`` is what callers see."""

    id: str
    type: str
    state: JobState
    params: dict[str, Any]
    raw: dict[str, str] = field(repr=False)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Job:
        return cls(
            id=h["id"],
            type=h.get("type", ""),
            state=JobState(h["state"]),
            params=json.loads(h.get("params") or "{}"),
            raw=h,
        )

    def get(self, name: str, default: str = "") -> str:
        return self.raw.get(name, default)

    def int(self, name: str) -> int:
        return int(self.raw.get(name) or 0)

    @property
    def upstream_task_id(self) -> str | None:
        return self.raw.get("upstream_task_id") or None

    @property
    def previous_task_ids(self) -> list[str]:
        """Upstream tasks of earlier rounds (before each caller retry), oldest first; stored
        comma-joined in ``previous_task_ids``."""
        return [t for t in (self.raw.get("previous_task_ids") or "").split(",") if t]

    @property
    def tracks(self) -> list[dict[str, Any]]:
        return json.loads(self.raw.get("tracks") or "[]")

    def to_public(self) -> dict[str, Any]:
        """The job as callers see it: the fields of ``PUBLIC_JOB`` below (also the API's
        ``JobOut``), read from this record."""
        return public_job(self)


# -- what callers see ---------------------------------------------------------------------------


class Shown(NamedTuple):
    """One field callers see: how it is read from a job, and its schema field."""

    read: Callable[[Job], Any]
    field: fields.Field


def shape_schema(name: str, shape: dict[str, Shown], **more: fields.Field) -> type[Schema]:
    """The schema called ``name`` of the fields of ``shape`` (and ``more``)."""
    return Schema.from_dict({**{key: shown.field for key, shown in shape.items()}, **more},
                            name=name)


def _read(job: Job, shape: dict[str, Shown]) -> dict[str, Any]:
    return {key: shown.read(job) for key, shown in shape.items()}


def _object(shape: dict[str, Shown], *when: str) -> Callable[[Job], dict[str, Any] | None]:
    """Reads ``shape`` from a job whose record has a value in one of the fields ``when``;
    None for any other job."""
    return lambda job: _read(job, shape) if any(job.get(name) for name in when) else None


def iso_ms(ms: str | int | None) -> str | None:
    """A time in ms since the epoch as ISO 8601 UTC (None for none)."""
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _time(name: str) -> Callable[[Job], str | None]:
    """Reads the record field ``name`` (ms since the epoch) as ISO 8601 UTC."""
    return lambda job: iso_ms(job.get(name))


def _timestamps(job: Job) -> dict[str, str | None]:
    """When the job entered each state (and other times of the record that are no field of
    their own): ``<name>_at`` shown as ``<name>``."""
    return {name[: -len("_at")]: iso_ms(value) for name, value in job.raw.items()
            if name.endswith("_at") and value and name not in PUBLIC_JOB}


def _error_code(job: Job) -> int | str | None:
    code = job.get("error_code") or None
    return int(code) if code and code.lstrip("-").isdigit() else code


class _PassThrough(Schema):
    """A schema whose undeclared fields pass through as they are."""

    @post_dump(pass_original=True)
    def keep_the_rest(self, data: dict, original: dict, **_: object) -> dict:
        return {**{k: v for k, v in original.items() if k not in data}, **data}


_TRACK_TYPES: dict[type, type[fields.Field]] = {str: fields.String, float: fields.Float}
#: one generated track: every field the provider returned (snake_case, provider/tracks.py),
#: the known ones declared, the rest passed through
TrackOut: type[Schema] = type("TrackOut", (_PassThrough,), {
    name: _TRACK_TYPES[known.type](metadata={"description": known.doc})
    for name, known in TRACK_FIELDS.items()})

#: a job's ``error``: what failed it (or its last failed call)
JOB_ERROR: dict[str, Shown] = {
    "code": Shown(_error_code, fields.Raw(allow_none=True, metadata={
        "description": "provider or backbeat code"})),
    "message": Shown(lambda job: job.get("error_message"), fields.String()),
}
JobError = shape_schema("JobError", JOB_ERROR)
#: a job's ``notify``: its webhook
NOTIFY: dict[str, Shown] = {
    "url": Shown(lambda job: job.get("notify_url"), fields.String()),
    "state": Shown(lambda job: job.get("notify_state") or "waiting",
                   fields.String(metadata={"enum": NOTIFY_STATES})),
    "attempts": Shown(lambda job: job.int("notify_attempts"), fields.Integer()),
    "error": Shown(lambda job: job.get("notify_error") or None, fields.String(allow_none=True)),
}
NotifyOut = shape_schema("NotifyOut", NOTIFY)

#: a job as callers see it, in order
PUBLIC_JOB: dict[str, Shown] = {
    "id": Shown(lambda job: job.id, fields.String(required=True)),
    "type": Shown(lambda job: job.type, fields.String(required=True)),
    "state": Shown(lambda job: job.state.value,
                   fields.String(required=True, metadata={"enum": STATES})),
    "params": Shown(lambda job: job.params, fields.Dict()),
    "upstream_task_id": Shown(lambda job: job.upstream_task_id, fields.String(allow_none=True)),
    "producer": Shown(lambda job: job.get("producer") or "default", fields.String(
        metadata={"description": "who created it (the token's name, BACKBEAT_API_TOKENS)"})),
    "account": Shown(lambda job: job.get("account") or None, fields.String(
        allow_none=True, metadata={"description": "the provider account (its name, never its "
                                                  "key) of the latest submission"})),
    "attempts": Shown(lambda job: job.int("attempts"), fields.Integer()),
    "tracks": Shown(lambda job: job.tracks, fields.List(fields.Nested(TrackOut))),
    "error": Shown(_object(JOB_ERROR, "error_code", "error_message"),
                   fields.Nested(JobError, allow_none=True)),
    "idempotency_key": Shown(lambda job: job.get("idempotency_key") or None,
                             fields.String(allow_none=True)),
    "priority": Shown(lambda job: job.int("priority"), fields.Integer()),
    "retries": Shown(lambda job: job.int("retries"), fields.Integer()),
    "notify": Shown(_object(NOTIFY, "notify_url"), fields.Nested(NotifyOut, allow_none=True)),
    "deadline_at": Shown(_time("deadline_at"), fields.String(allow_none=True)),
    "duplicate_task_ids": Shown(lambda job: [t for t in job.get("dup_task_ids").split(",") if t],
                                fields.List(fields.String())),
    "created_at": Shown(_time("created_at"), fields.String(allow_none=True)),
    "updated_at": Shown(_time("updated_at"), fields.String(allow_none=True)),
    "timestamps": Shown(_timestamps, fields.Dict(keys=fields.String(), values=fields.String())),
}


def public_job(job: Job) -> dict[str, Any]:
    """The job as callers see it: the fields of PUBLIC_JOB, in order."""
    return _read(job, PUBLIC_JOB)
