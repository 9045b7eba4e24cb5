"""The job store: records, idempotency keys, forward-only transitions and events, in Redis."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import WatchError

from ..config.settings import DEFAULT_DEADLINE_MS, DEFAULT_RETENTION_MS
from ..provider import tracks as track_parsing
from . import scripts
from .errors import IdempotencyConflict
from .job import Job
from .keys import Keys
from .redis_conn import server_ms
from .states import JobState, Mode

if TYPE_CHECKING:
    from .messages import Message

log = logging.getLogger(__name__)

#: approximate cap of the events stream (XADD MAXLEN ~)
EVENTS_MAXLEN = 100_000
#: the metric counting second upstream tasks seen for one job (keys.metric)
DUPLICATES = "duplicate_upstream_tasks"
#: a listing reads at most this many pages of its index to fill one filtered page
SCAN_PAGES = 5


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

    def __init__(self, redis: Redis, keys: Keys, retention_ms: int = DEFAULT_RETENTION_MS,
                 account: str = "") -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        #: the provider account (anonymised) named in each transition's log line; with several
        #: accounts "": the claim's line names the account the job goes through (``account``)
        self.account = account
        self._create = scripts.register(redis, "create_job")
        self._transition = scripts.register(redis, "transition")
        self._annotate = scripts.register(redis, "annotate")
        self._claim = scripts.register(redis, "claim_due")
        self._add_duplicate = scripts.register(redis, "add_duplicate")
        self._rescue = scripts.register(redis, "rescue_stranded")

    def create(self, *args: Any, **kwargs: Any) -> tuple[Job, bool]:
        """Write a new queued job (the arguments of :meth:`create_placed`, without
        ``target``); returns (job, created). Same key + same request = same job (whoever
        replays it: the job keeps its first producer)."""
        job, created, _ = self.create_placed(*args, **kwargs)
        return job, created

    def create_placed(
        self,
        job_id: str,
        job_type: str,
        params: dict[str, Any],
        idempotency_key: str | None = None,
        priority: int = 0,
        notify_url: str | None = None,
        deadline_ms: int = DEFAULT_DEADLINE_MS,
        producer: str = "default",
        credits_reserved: float = 0.0,
        target: int | None = None,
        message: Message | None = None,
    ) -> tuple[Job, bool, str]:
        """Write a new queued job: record, params, idempotency key, indexes (create_job.lua);
        returns (job, created, placed). With ``target`` (the broker is this Redis) the new
        job is placed in the same step: admitted to its producer's lane under backlog
        ("lane"), or sent in the same step with ``message`` (its submit message for the front
        of the line, workers/messages.py: "sent"), or left for the caller to send ("send");
        "" when not placed."""
        digest = fingerprint(job_type, params, notify_url)
        record = {
            "type": job_type,
            "priority": str(priority),
            "idempotency_key": idempotency_key or "",
            "notify_url": notify_url or "",
            "deadline_ms": str(int(deadline_ms)),
            "producer": producer,
            **({"credits_reserved": repr(credits_reserved)} if credits_reserved else {}),
        }
        flat = [x for kv in record.items() for x in kv]
        k = self.keys
        placement = "" if target is None else f"{int(target)}|{producer}|{int(priority)}"
        created, found_id, found_digest, found, placed = self._create(
            keys=[k.job(job_id), k.idem(idempotency_key or "-"), k.events, k.queued, k.jobs,
                  k.outbox, k.deadline, k.params(job_id), k.lanes, k.parked, k.submit_queue,
                  k.lane(producer), k.lane_of, k.lane_seq],
            args=[job_id, "1" if idempotency_key else "0", digest, self.retention_ms,
                  EVENTS_MAXLEN, int(deadline_ms), json.dumps(params, separators=(",", ":")),
                  placement, *(message.args() if message is not None else ("", "", "")),
                  *flat],
        )
        if not created and found_digest != digest:
            raise IdempotencyConflict(idempotency_key or "", found_id)
        # the record comes back with the reply (no second read)
        job = Job.from_hash(dict(zip(found[::2], map(str, found[1::2]), strict=True))
                            ) if found else None
        if job is None:  # the key outlived its job record: treat as a fresh request
            self.redis.delete(self.keys.idem(idempotency_key or "-"))
            return self.create_placed(job_id, job_type, params, idempotency_key, priority,
                                      notify_url, deadline_ms, producer, credits_reserved,
                                      target, message)
        return job, bool(created), placed

    def get(self, job_id: str) -> Job | None:
        pipe = self.redis.pipeline(transaction=False)
        self.read_on(pipe, job_id)
        return self.job_from(*pipe.execute())

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """The jobs of ``job_ids`` in one round trip (None for one that is gone)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            self.read_on(pipe, job_id)
        replies = pipe.execute()
        return [self.job_from(h, p) for h, p in zip(replies[::2], replies[1::2], strict=True)]

    def read_on(self, pipe: Any, job_id: str) -> None:
        """Queue the two reads of one job on ``pipe``: its record and its params (the
        replies, in order, are what :meth:`job_from` takes)."""
        pipe.hgetall(self.keys.job(job_id))
        pipe.get(self.keys.params(job_id))

    @staticmethod
    def job_from(record: dict[str, str], params: str | None) -> Job | None:
        """The Job of one record and its params (None when the record is gone); a record
        written before params had their own key carries them itself."""
        if not record:
            return None
        if params is not None and "params" not in record:
            record = {**record, "params": params}
        return Job.from_hash(record)

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
        retry: bool = False,
        resubmit: bool = False,
        park_delay_ms: int | None = None,
        account: str = "",
    ) -> Transition:
        """Apply one move if the state machine allows it; see transition.lua for the rules.
        ``retry=True`` is the one way out of ``failed``/``expired`` (back to ``queued``);
        ``resubmit=True`` takes a job whose task failed retryably back to ``queued``, parked.
        ``park_delay_ms``: a job moved to ``queued`` is parked for the pump, due in that many
        ms, in the same script call (requeue and park are one step: nothing strands a job).
        ``account``: the account id the move's log line names (default: the store's)."""
        mode = Mode.RETRY if retry else Mode.RESUBMIT if resubmit else Mode.FORWARD
        if resubmit and park_delay_ms is None:
            park_delay_ms = 0
        if fields and "tracks" in fields:
            fields = {**fields, "tracks": self._merged_tracks(job_id, fields["tracks"])}
        flat = [str(x) for kv in (fields or {}).items() for x in kv]
        k = self.keys
        applied, before = self._transition(
            keys=[k.job(job_id), k.hist(job_id), k.events, k.poll, k.uncertain, k.parked,
                  k.deadline, *k.state_indexes, k.notify, k.metric(DUPLICATES),
                  k.recent(k.metric(DUPLICATES)), k.leases, k.lease_holders,
                  k.params(job_id)],
            args=[job_id, to.value, reason, require_from.value if require_from else "",
                  require_attempt or "", "" if poll_delay_ms is None else int(poll_delay_ms),
                  self.retention_ms, EVENTS_MAXLEN,
                  mode.value, "" if park_delay_ms is None else max(0, int(park_delay_ms)),
                  *flat],
        )
        result = Transition(applied == 1, JobState(before) if before else None)
        if result.applied:  # one line per applied move; a refused one logs nothing
            origin = result.before.value if result.before else ""
            context = {"job": job_id, "from": origin, "to": to.value, "reason": reason}
            account = account or self.account
            if account:
                context["account"] = account
            log.info("job %s %s -> %s (%s)%s", job_id, origin, to.value, reason,
                     f" account {account}" if account else "", extra=context)
        return result

    def _merged_tracks(self, job_id: str, new: Any) -> str:
        """The tracks a transition writes: the job's stored tracks completed with ``new`` (JSON
        or a list), so no answer drops a field an earlier one brought (provider/tracks.py)."""
        incoming = json.loads(new) if isinstance(new, str) else list(new)
        stored = json.loads(self.redis.hget(self.keys.job(job_id), "tracks") or "[]")
        return json.dumps(track_parsing.merge(stored, incoming), separators=(",", ":"))

    def complete_tracks(self, job_id: str, task_id: str, new: list[dict[str, Any]]) -> bool:
        """Add the fields of ``new`` to the tracks the job already has (never new tracks, never
        on a job whose task is not ``task_id``), whatever its state: an answer that moves
        nothing (a late callback after a poll settled the job) still brings its fields, such
        as sunoapi.org's ``source_*`` URLs. Returns whether anything changed."""
        key = self.keys.job(job_id)
        with self.redis.pipeline() as pipe:
            for _ in range(5):
                try:
                    pipe.watch(key)
                    known, raw = pipe.hmget(key, ["upstream_task_id", "tracks"])
                    stored = json.loads(raw or "[]")
                    if not task_id or known != task_id or not stored:
                        return False
                    merged = track_parsing.merge(stored, new, add_new=False)
                    if merged == stored:
                        return False
                    pipe.multi()
                    pipe.hset(key, "tracks", json.dumps(merged, separators=(",", ":")))
                    pipe.execute()
                    return True
                except WatchError:
                    continue
        return False

    def add_duplicate(self, job_id: str, task_id: str) -> bool:
        """Record ``task_id`` as an upstream task the job does not own (a second one, or one
        whose attempt was superseded) and count it fleet-wide; False when it is the job's own
        task or already recorded."""
        dups = self.keys.metric(DUPLICATES)
        return self._add_duplicate(keys=[self.keys.job(job_id), dups, self.keys.recent(dups)],
                                   args=[task_id]) == 1

    def rescue_stranded(self, cutoff_ms: int, batch: int) -> int:
        """Park queued jobs that entered ``queued`` before ``cutoff_ms`` and were not examined
        yet, unless already parked, still in the outbox or waiting in a producer's lane;
        returns how many were parked."""
        k = self.keys
        return int(self._rescue(keys=[k.queued, k.parked, k.outbox, k.rescue_cursor, k.lane_of],
                                args=[cutoff_ms, batch]))

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """The job's last transitions, oldest first (time in ms, from, to, reason): its
        creation (the record's ``created_at``; no entry is stored for it), then the stored
        ones."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.job(job_id), "created_at")
        pipe.lrange(self.keys.hist(job_id), 0, -1)
        created_at, stored = pipe.execute()
        entries = [json.loads(e) for e in stored]
        if created_at is not None and not (entries and entries[0].get("reason") == "created"
                                           and entries[0].get("from") == ""):
            entries.insert(0, {"t": int(created_at), "from": "", "to": "queued",
                               "reason": "created"})
        return entries

    def dispatched(self, job_id: str) -> None:
        """The job's first message is in the broker: it leaves the outbox."""
        self.redis.zrem(self.keys.outbox, job_id)

    def list(self, state: JobState | None = None, job_type: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[Job], str | None]:
        """Jobs newest first (by entry into ``state``, or by creation), ``limit`` per page;
        returns (jobs, next cursor or None). Scans at most a few pages to honour ``job_type``."""
        index = self.keys.state(state.value) if state else self.keys.jobs
        top, after_id = _decode_cursor(cursor)
        jobs: list[Job] = []
        scanned, last = 0, None
        while len(jobs) < limit and scanned < limit * SCAN_PAGES:
            batch = self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 50,
                                                withscores=True)
            batch = [(m, s) for m, s in batch if not (after_id and s == top and m >= after_id)]
            if not batch:
                break
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in batch:
                self.read_on(pipe, member)
            replies = pipe.execute()
            for (member, score), record, params in zip(batch, replies[::2], replies[1::2],
                                                       strict=True):
                scanned += 1
                last = (score, member)
                if record and (job_type is None or record.get("type") == job_type):
                    jobs.append(self.job_from(record, params))
                    if len(jobs) == limit:
                        break
            top, after_id = last
        if last is None or not self._has_after(index, *last):
            return jobs, None
        return jobs, _encode_cursor(*last)

    def _has_after(self, index: str, score: float, member: str) -> bool:
        """Whether ``index`` holds an entry after (score, member) in newest-first order."""
        if self.redis.zcount(index, "-inf", f"({score}"):
            return True
        same = self.redis.zrangebyscore(index, score, score, start=0, num=1)
        return bool(same) and same[0] < member

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

    def claim_due(self, schedule_key: str, limit: int, lease_ms: int,
                  min_age_ms: int = 0) -> list[str]:
        """Lease up to ``limit`` members of a schedule zset due ``min_age_ms`` ago or earlier
        (see claim_due.lua)."""
        return list(self._claim(keys=[schedule_key], args=[limit, lease_ms, min_age_ms]))

    def park(self, job_id: str, delay_ms: int = 0) -> None:
        """Keep a queued job out of the broker until ``delay_ms`` from now and the limiter's
        gates are open; the pump (beat) sends its message again then."""
        self.redis.zadd(self.keys.parked, {job_id: self.now_ms() + max(0, int(delay_ms))})

    def reschedule(self, schedule_key: str, job_id: str, delay_ms: int) -> None:
        """Move a claimed member to now + delay, unless it left the schedule meanwhile."""
        self.hand_back(schedule_key, [job_id], delay_ms)

    def hand_back(self, schedule_key: str, job_ids: list[str], delay_ms: int = 0) -> None:
        """Move claimed members to now + delay in one command (those still in the schedule):
        what a cycle claimed and could not start before its lease ran short."""
        if job_ids:
            due_ms = self.now_ms() + delay_ms
            self.redis.zadd(schedule_key, dict.fromkeys(job_ids, due_ms), xx=True)

    def now_ms(self) -> int:
        return server_ms(self.redis)

    def read_events(self, last_id: str = "$", block_ms: int | None = None, count: int = 100):
        """Events after ``last_id`` as [(stream_id, {job, from, to, reason, t})]."""
        reply = self.redis.xread({self.keys.events: last_id}, count=count, block=block_ms)
        return reply[0][1] if reply else []

    def latest_events(self, count: int):
        """The last ``count`` events, oldest first, in the shape of :meth:`read_events`; the
        last one's id is where reading on starts (none yet: read from ``0-0``)."""
        return self.redis.xrevrange(self.keys.events, count=count)[::-1]


def _encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{int(score)}:{member}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[float | str, str | None]:
    """(top score, id already returned at that score); ValueError on a malformed cursor."""
    if not cursor:
        return "+inf", None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = raw.split(":", 1)
        return float(int(score)), member
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError("malformed cursor") from err
