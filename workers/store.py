"""The job store: records, idempotency keys, forward-only transitions and events, in Redis."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from . import scripts
from .errors import IdempotencyConflict
from .keys import Keys
from .states import JobState

#: approximate cap of the events stream (XADD MAXLEN ~)
EVENTS_MAXLEN = 100_000
#: how long an idempotency key keeps naming its job, in ms (the providers keep files 14 days)
DEFAULT_RETENTION_MS = 14 * 24 * 3600 * 1000


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
    def tracks(self) -> list[dict[str, Any]]:
        return json.loads(self.raw.get("tracks") or "[]")

    def to_public(self) -> dict[str, Any]:
        error = None
        if self.raw.get("error_code") or self.raw.get("error_message"):
            code = self.raw.get("error_code") or None
            error = {"code": int(code) if code and code.lstrip("-").isdigit() else code,
                     "message": self.raw.get("error_message", "")}
        timestamps = {
            name[: -len("_at")]: _iso(value)
            for name, value in self.raw.items()
            if name.endswith("_at") and value and name not in ("created_at", "updated_at")
        }
        return {
            "id": self.id,
            "type": self.type,
            "state": self.state.value,
            "params": self.params,
            "upstream_task_id": self.upstream_task_id,
            "attempts": self.int("attempts"),
            "tracks": self.tracks,
            "error": error,
            "idempotency_key": self.raw.get("idempotency_key") or None,
            "priority": self.int("priority"),
            "duplicate_task_ids": [t for t in self.raw.get("dup_task_ids", "").split(",") if t],
            "created_at": _iso(self.raw.get("created_at")),
            "updated_at": _iso(self.raw.get("updated_at")),
            "timestamps": timestamps,
        }


@dataclass(frozen=True)
class Transition:
    """What a transition call did: ``applied`` is False when the move was not allowed."""

    applied: bool
    before: JobState | None


def fingerprint(job_type: str, params: dict[str, Any], notify_url: str | None) -> str:
    """A digest of what makes two enqueue requests 'the same' for idempotency."""
    canonical = json.dumps([job_type, params, notify_url or ""], sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class JobStore:
    """Reads and writes job records; every state change goes through ``transition.lua``."""

    def __init__(self, redis: Redis, keys: Keys, retention_ms: int = DEFAULT_RETENTION_MS) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        self._create = scripts.register(redis, "create_job")
        self._transition = scripts.register(redis, "transition")
        self._annotate = scripts.register(redis, "annotate")
        self._claim = scripts.register(redis, "claim_due")

    def create(
        self,
        job_id: str,
        job_type: str,
        params: dict[str, Any],
        idempotency_key: str | None = None,
        priority: int = 0,
        notify_url: str | None = None,
        deadline_ms: int | None = None,
    ) -> tuple[Job, bool]:
        """Write a new queued job; returns (job, created). Same key + same request = same job."""
        digest = fingerprint(job_type, params, notify_url)
        record = {
            "type": job_type,
            "params": json.dumps(params, separators=(",", ":")),
            "priority": str(priority),
            "idempotency_key": idempotency_key or "",
            "notify_url": notify_url or "",
            "deadline_ms": "" if deadline_ms is None else str(deadline_ms),
        }
        flat = [x for kv in record.items() for x in kv]
        created, found_id, found_digest = self._create(
            keys=[self.keys.job(job_id), self.keys.idem(idempotency_key or "-"), self.keys.events,
                  self.keys.queued],
            args=[job_id, "1" if idempotency_key else "0", digest, self.retention_ms,
                  EVENTS_MAXLEN, *flat],
        )
        if not created and found_digest != digest:
            raise IdempotencyConflict(idempotency_key or "", found_id)
        job = self.get(found_id)
        if job is None:  # the key outlived its job record: treat as a fresh request
            self.redis.delete(self.keys.idem(idempotency_key or "-"))
            return self.create(job_id, job_type, params, idempotency_key, priority, notify_url,
                               deadline_ms)
        return job, bool(created)

    def get(self, job_id: str) -> Job | None:
        h = self.redis.hgetall(self.keys.job(job_id))
        return Job.from_hash(h) if h else None

    def transition(
        self,
        job_id: str,
        to: JobState,
        reason: str,
        *,
        require_from: JobState | None = None,
        require_attempt: str | None = None,
        poll_delay_ms: int | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Transition:
        """Apply one move if the state machine allows it; see transition.lua for the rules."""
        flat = [str(x) for kv in (fields or {}).items() for x in kv]
        applied, before = self._transition(
            keys=[self.keys.job(job_id), self.keys.events, self.keys.queued, self.keys.poll,
                  self.keys.uncertain, self.keys.parked],
            args=[job_id, to.value, reason, require_from.value if require_from else "",
                  require_attempt or "", "" if poll_delay_ms is None else int(poll_delay_ms),
                  self.retention_ms, EVENTS_MAXLEN, *flat],
        )
        return Transition(applied == 1, JobState(before) if before else None)

    def annotate(
        self,
        job_id: str,
        fields: dict[str, Any],
        require_state: JobState | None = None,
        uncertain_delay_ms: int | None = None,
    ) -> bool:
        """Set fields without a state change (only while in ``require_state``, or non-terminal)."""
        flat = [str(x) for kv in fields.items() for x in kv]
        done = self._annotate(
            keys=[self.keys.job(job_id), self.keys.uncertain],
            args=[job_id, require_state.value if require_state else "",
                  "" if uncertain_delay_ms is None else int(uncertain_delay_ms), *flat],
        )
        return done == 1

    def claim_due(self, schedule_key: str, limit: int, lease_ms: int) -> list[str]:
        """Lease up to ``limit`` due members of a schedule zset (see claim_due.lua)."""
        return list(self._claim(keys=[schedule_key], args=[limit, lease_ms]))

    def park(self, job_id: str, delay_ms: int = 0) -> None:
        """Keep a queued job out of the broker until ``delay_ms`` from now and the limiter's
        gates are open; the pump (beat) sends its message again then."""
        self.redis.zadd(self.keys.parked, {job_id: self.now_ms() + max(0, int(delay_ms))})

    def reschedule(self, schedule_key: str, job_id: str, delay_ms: int) -> None:
        """Move a claimed member to now + delay, unless it left the schedule meanwhile."""
        now_ms = self.now_ms()
        self.redis.zadd(schedule_key, {job_id: now_ms + delay_ms}, xx=True)

    def now_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def read_events(self, last_id: str = "$", block_ms: int | None = None, count: int = 100):
        """Events after ``last_id`` as [(stream_id, {job, from, to, reason, t})]."""
        reply = self.redis.xread({self.keys.events: last_id}, count=count, block=block_ms)
        return reply[0][1] if reply else []


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")
