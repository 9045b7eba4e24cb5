"""``backbeat.housekeep`` and ``backbeat.notify``: deadlines, outbox, retention; webhooks."""

from __future__ import annotations

from dataclasses import asdict

from ..workers import housekeeping, runtime, webhooks
from ..workers.app import app


@app.task(name="backbeat.housekeep", acks_late=True, ignore_result=True)
def housekeep() -> dict:
    """Expire overdue jobs, re-send unsent messages, trim indexes past retention."""
    return asdict(housekeeping.run(runtime.current()))


@app.task(name="backbeat.notify", acks_late=True, ignore_result=True)
def notify() -> int:
    """Deliver due caller webhooks (signed, retried with backoff)."""
    return webhooks.deliver_due(runtime.current())
