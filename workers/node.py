"""A worker node's life: leases on the jobs it holds, a heartbeat, and a drain on shutdown.

Connected to Celery's signals by :func:`connect` (workers/app.py):

- ``task_received`` (main process): the node takes a lease on each ``backbeat.submit`` job the
  broker delivers to it, prefetched or not (see workers/leases.py);
- ``worker_ready`` (main process): a heartbeat thread renews the leases of every job the node
  still holds and reclaims the jobs of nodes that stopped renewing theirs (dead nodes);
- ``worker_shutting_down`` (main process, on SIGTERM: a warm shutdown): the node drains. Its pool
  processes get ``DRAIN_SIGNAL``; a job waiting for a token is handed to another node at once
  (sent at the front of the line, parked as the pump's fallback), a call in flight is finished
  and recorded (never cut off, so no job becomes uncertain), and kombu puts the prefetched
  messages back when the node closes its connection.

Warning: send SIGTERM to the worker's main process only (as Kubernetes, ``docker stop`` and
systemd with ``KillMode=mixed`` do). A SIGTERM to every process of the group kills pool
processes mid-call; their jobs then take the uncertain path.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from typing import Any

from celery import signals
from celery.worker import state as worker_state

from . import runtime
from .answers import FLUSHER
from .housekeeping import reclaim_dead_leases
from .leases import HEARTBEAT_S

log = logging.getLogger(__name__)

#: the task whose deliveries are leased (others are short and idempotent: beat's cycles)
SUBMIT_TASK = "backbeat.submit"
#: the signal the main process sends its pool processes when the node starts draining
DRAIN_SIGNAL = signal.SIGUSR2
#: how often a waiting task looks at the drain flag, in seconds
DRAIN_CHECK_S = 0.1

_draining = False


class Draining(Exception):  # noqa: N818 - a state, like StopIteration
    """Raised inside a wait when this worker is shutting down: hand the job to another node."""


def nap(seconds: float) -> None:
    """``time.sleep`` in short steps that raises :class:`Draining` once the node drains."""
    end = time.monotonic() + seconds
    while True:
        if _draining:
            raise Draining()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, DRAIN_CHECK_S))


def held_job_ids() -> list[str]:
    """Job ids of the submit messages this node holds now (prefetched or running)."""
    for _ in range(5):  # the consumer may add a request while this thread copies the set
        try:
            requests = list(worker_state.reserved_requests)
            break
        except RuntimeError:
            time.sleep(0.01)
    else:
        return []
    return [str(r.args[0]) for r in requests if r.name == SUBMIT_TASK and r.args]


class Heartbeat(threading.Thread):
    """Renews this node's leases and reclaims dead nodes' jobs every ``HEARTBEAT_S``."""

    def __init__(self, node: str) -> None:
        super().__init__(name="backbeat-heartbeat", daemon=True)
        self.node = node
        self.stopped = threading.Event()

    def run(self) -> None:
        self.stopped.wait(random.uniform(0, HEARTBEAT_S))  # nodes started together spread out
        while not self.stopped.is_set():
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; leases outlive four
                log.warning("heartbeat of %s failed", self.node, exc_info=True)
            self.stopped.wait(HEARTBEAT_S)

    def beat(self) -> None:
        rt = runtime.current()
        rt.leases.renew(self.node, held_job_ids())
        reclaim_dead_leases(rt)


def _on_task_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    if request is None or request.name != SUBMIT_TASK or not request.args:
        return
    try:
        tag = str(getattr(request.message, "delivery_tag", "") or "")
        runtime.current().leases.take(sender.hostname, [(str(request.args[0]), tag)])
    except Exception:  # noqa: BLE001 - never break delivery: the stranded-job rescue remains
        log.warning("could not lease job %s", request.args[0], exc_info=True)


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    Heartbeat(sender.hostname).start()


def _on_shutting_down(sig: str = "", how: str = "", **_: Any) -> None:
    """Runs inside the main process's signal handler: set the flag, tell the pool processes."""
    global _draining
    if how != "Warm":
        return
    _draining = True
    try:
        from billiard import process

        for child in process.active_children():
            os.kill(child.pid, DRAIN_SIGNAL)
    except Exception:  # noqa: BLE001 - best effort: tasks then finish their waits normally
        pass


def _on_process_init(**_: Any) -> None:
    def drain(*_: Any) -> None:
        global _draining
        _draining = True

    signal.signal(DRAIN_SIGNAL, drain)


def _on_process_shutdown(**_: Any) -> None:
    """A pool process ends with os._exit (no atexit): the limiter answers it still holds are
    sent first (workers/answers.py)."""
    try:
        FLUSHER.flush_all()
    except Exception:  # noqa: BLE001 - never block the exit: their entries age out
        log.warning("limiter answers not sent at exit", exc_info=True)


def connect() -> None:
    """Connect the hooks above to Celery's signals (idempotent: weak=False, dispatch_uid)."""
    signals.task_received.connect(_on_task_received, weak=False, dispatch_uid="bb-lease")
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="bb-heartbeat")
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False, dispatch_uid="bb-drain")
    signals.worker_process_init.connect(_on_process_init, weak=False, dispatch_uid="bb-init")
    signals.worker_process_shutdown.connect(_on_process_shutdown, weak=False,
                                            dispatch_uid="bb-answers")
