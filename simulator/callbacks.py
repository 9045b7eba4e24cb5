"""Stage-callback delivery: one background thread draining a heap of due events."""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from .config import SimConfig
from .ledger import Ledger
from .tasks import Task, callback_body

log = logging.getLogger(__name__)

#: wait before retry 1, 2, 3 (seconds, times ``callback_backoff_scale``); then give up
BACKOFF_S = (0.5, 1.0, 2.0)
#: the duplicate copy of a callback follows the original after this many seconds
DUPLICATE_GAP_S = 0.05


@dataclass(order=True)
class _Event:
    """One callback POST due at ``due`` (monotonic seconds)."""

    due: float
    seq: int
    task: Task = field(compare=False)
    kind: str = field(compare=False)
    url: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)
    lost: bool = field(compare=False)
    duplicate_copy: bool = field(compare=False)
    generation: int = field(compare=False)
    attempts: int = field(default=0, compare=False)


def sign(key: str, task_id: str, timestamp: str) -> str:
    """kie-style signature: base64(HMAC-SHA256(key, task_id + "." + timestamp))."""
    mac = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class CallbackSender:
    """Delivers scheduled callbacks in due order from a single daemon thread.

    A POST that fails (connection error or any status but 200) is retried 3 times with
    backoff, then counted in ``callbacks_failed``. Warning: one slow receiver delays the
    others, as one sender thread serves all tasks (the providers allow 15 s per callback).
    """

    def __init__(self, ledger: Ledger, get_config: Callable[[], SimConfig]) -> None:
        self._ledger = ledger
        self._config = get_config
        self._heap: list[_Event] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._generation = 0
        self._delivering = 0  # popped from the heap, fate not recorded yet
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    def start(self) -> None:
        """Start the delivery thread (again after ``stop()`` too)."""
        if self._thread is None or not self._thread.is_alive():
            with self._cond:
                self._stopping = False
            self._session = requests.Session()
            # callbacks go to local receivers: never through an environment proxy
            self._session.trust_env = False
            self._thread = threading.Thread(target=self._run, name="sim-callbacks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop delivering; pending events are dropped."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._session.close()

    def clear(self) -> None:
        """Drop pending events; deliveries already in flight are not counted."""
        with self._cond:
            self._heap.clear()
            self._generation += 1

    def pending(self) -> int:
        """Number of events waiting (including retries) or being delivered right now."""
        with self._cond:
            return len(self._heap) + self._delivering

    def schedule(self, task: Task, kind: str, due: float, lost: bool, duplicate: bool) -> None:
        """Queue the ``kind`` callback of ``task`` at monotonic ``due``."""
        url, body = task.request["callBackUrl"], callback_body(task, kind)
        copies = [(due, False)]
        if duplicate and not lost:
            copies.append((due + DUPLICATE_GAP_S, True))
        with self._cond:
            for when, copy in copies:
                event = _Event(
                    when, next(self._seq), task, kind, url, body, lost, copy, self._generation
                )
                heapq.heappush(self._heap, event)
            self._cond.notify_all()

    def _run(self) -> None:
        """Pop due events and fire them until stopped."""
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0].due <= now:
                        break
                    timeout = self._heap[0].due - now if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                event = heapq.heappop(self._heap)
                self._delivering += 1
            try:
                self._fire(event)
            except Exception:  # the sender must survive anything one delivery does
                log.exception("callback delivery crashed for task %s", event.task.task_id)
            finally:
                with self._cond:
                    self._delivering -= 1

    def _fire(self, event: _Event) -> None:
        """Deliver one event: lost, disabled, sent, retried or given up."""
        cfg = self._config()
        if not cfg.callbacks_enabled:
            self._finish(event, "disabled", None)
        elif event.lost:
            self._finish(event, "lost", None, counter="callbacks_lost")
        else:
            event.attempts += 1
            status = self._post(event, cfg)
            if status == 200:
                if event.duplicate_copy:  # before "sent": a reader never sees it lag behind
                    self._count(event, "callbacks_duplicated")
                self._finish(event, "sent", status, counter="callbacks_sent")
            elif event.attempts <= len(BACKOFF_S):
                self._retry(event, cfg)
            else:
                self._finish(event, "failed", status, counter="callbacks_failed")

    def _post(self, event: _Event, cfg: SimConfig) -> int | None:
        """POST the body; the HTTP status, or None when the connection failed."""
        headers = {"Content-Type": "application/json"}
        if cfg.webhook_hmac_key:
            timestamp = str(int(time.time()))
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = sign(
                cfg.webhook_hmac_key, event.task.task_id, timestamp
            )
        data = json.dumps(event.body, ensure_ascii=False).encode()
        try:
            resp = self._session.post(
                event.url, data=data, headers=headers, timeout=cfg.callback_timeout_s
            )
        except requests.RequestException as exc:
            log.debug("callback to %s failed: %s", event.url, exc)
            return None
        resp.close()
        return resp.status_code

    def _retry(self, event: _Event, cfg: SimConfig) -> None:
        """Put a failed event back with its backoff."""
        delay = BACKOFF_S[event.attempts - 1] * cfg.callback_backoff_scale
        event.due = time.monotonic() + delay
        self._count(event, "callbacks_retried")
        with self._cond:
            if event.generation == self._generation and not self._stopping:
                heapq.heappush(self._heap, event)
                self._cond.notify_all()

    def _count(self, event: _Event, counter: str) -> None:
        """Count ``counter`` unless a reset happened since the event was scheduled (checked
        under the ledger's lock, which a reset holds: an old delivery never counts anew)."""
        with self._ledger.lock:
            if event.generation == self._generation:
                self._ledger.count(counter)

    def _finish(self, event: _Event, outcome: str, status: int | None, counter: str = "") -> None:
        """Record the final fate of one event on its task and in the counters, in one step
        under the ledger's lock (which a reset holds): the record and its count appear
        together, and an event from before a reset leaves no trace in the fresh ledger."""
        record = {
            "type": event.kind,
            "outcome": outcome,
            "attempts": event.attempts,
            "http_status": status,
            "duplicate": event.duplicate_copy,
            "t": time.monotonic(),
            "wall": time.time(),
        }
        with self._ledger.lock:
            if event.generation != self._generation:
                return
            self._ledger.add_callback_record(event.task, record)
            if counter:
                self._ledger.count(counter)
