"""Normal answers a limiter holds back for a moment, so a granted call costs one round trip.

Every granted call must be reported (limiter.py): its log entry lowered to the answer's time,
the answer counted, the AIMD factor raised. For a normal answer (accepted or rejected) of a
plain grant nothing is urgent about that: until it is applied the entry counts as arriving
"now", the safe side. So ``Limiter.report`` holds such answers here: the grant's id travels
with the bucket's next ``acquire`` (acquire.lua lowers its entry in the same script call: the
window sees the answer without a round trip of its own), and the flusher thread sends them
all within ``FLUSH_S`` (settle.lua: counted, the AIMD increase, lowered if no acquire did),
one call for every answer of that moment. Answers that change the account's state
(throttles, 455, credits, key, path, probes) are never held.

What it costs: an answered call of an idle bucket keeps counting as in flight for at most
``FLUSH_S`` longer (other workers may wait that much longer for a token when the window is
full), and the calls counters (``backbeat_provider_calls_total``) trail by as much. A
process that dies holding answers loses them like one that dies before its report: their
entries stop counting after ``flight_ms``, and those calls are not counted. A connection
error while sending them puts them back (sent again: a lost reply can count those calls
twice; lowering is idempotent).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger(__name__)

#: longest a held answer waits for an acquire of its bucket before the flusher sends it
FLUSH_S = 0.02
#: pause of the flusher after a failed send (Redis unreachable)
RETRY_S = 0.5


class Batch(NamedTuple):
    """Answers taken out to be sent: outcome -> count, and the answered grants' ids."""

    counts: dict[str, int]
    ids: list[str]

    def args(self) -> tuple[str, ...]:
        """acquire.lua's / settle.lua's trailing arguments: "accepted=2,rejected=1" (or just
        "accepted" when every answer is one), then the ids."""
        if len(self.counts) == 1:
            return (next(iter(self.counts)), *self.ids)
        return (",".join(f"{k}={n}" for k, n in self.counts.items()), *self.ids)


class Held:
    """One bucket's answers not yet in Redis (thread-safe): every answer waits for the
    flusher (counted and lowered: ``take``); its grant's id also rides with the next acquire
    (lowered only: ``take_ids``), the window's part, at no extra round trip."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._ids: list[str] = []
        self._unsent: list[str] = []  # ids no acquire has carried yet

    def add(self, outcome: str, grant_id: str) -> bool:
        """Hold one answer; True when it is the only one held (a flush must be scheduled)."""
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + 1
            self._ids.append(grant_id)
            self._unsent.append(grant_id)
            return len(self._ids) == 1

    def take_ids(self) -> list[str]:
        """The ids for the next acquire to lower (lost with it if it fails: the flush
        lowers them all the same)."""
        if not self._unsent:  # unlocked peek: the hot path of a bucket with nothing new
            return self._unsent
        with self._lock:
            ids, self._unsent = self._unsent, []
            return ids

    def take(self) -> Batch | None:
        with self._lock:
            if not self._ids:
                return None
            batch = Batch(self._counts, self._ids)
            self._counts, self._ids, self._unsent = {}, [], []
            return batch

    def put_back(self, batch: Batch) -> None:
        with self._lock:
            for outcome, n in batch.counts.items():
                self._counts[outcome] = self._counts.get(outcome, 0) + n
            self._ids[:0] = batch.ids


class Flusher:
    """One daemon thread per process that sends what no acquire took within FLUSH_S."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:  # also in a forked child: the parent's thread is not there
        self._cond = threading.Condition()
        self._due: dict[int, Callable[[], None]] = {}
        self._thread: threading.Thread | None = None
        #: one flush at a time: a caller of flush_all returns after one in progress ended
        self._sending = threading.Lock()

    def schedule(self, key: int, flush: Callable[[], None]) -> None:
        with self._cond:
            self._due[key] = flush
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="limiter-answers",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._cond.wait()
            time.sleep(FLUSH_S)
            if not self.flush_all():
                time.sleep(RETRY_S)

    def flush_all(self) -> bool:
        """Send everything due now; False when a send failed (it stays due)."""
        with self._sending:
            return self._send_due()

    def _send_due(self) -> bool:
        with self._cond:
            due, self._due = self._due, {}
        ok = True
        for key, flush in due.items():
            try:
                flush()
            except Exception as exc:  # noqa: BLE001 - the answers were put back; retried
                ok = False
                log.warning("limiter: answers not sent yet (%s: %s); retrying",
                            type(exc).__name__, exc)
                with self._cond:
                    self._due.setdefault(key, flush)
        return ok


FLUSHER = Flusher()
os.register_at_fork(after_in_child=FLUSHER._reset)
atexit.register(FLUSHER.flush_all)
