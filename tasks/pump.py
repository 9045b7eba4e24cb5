"""``backbeat.pump``: beat sends parked jobs back to the queue when the limiter allows."""

from __future__ import annotations

import logging

from ..workers import runtime
from ..workers.app import app
from ..workers.pump import pump as pump_parked

log = logging.getLogger(__name__)


@app.task(name="backbeat.pump", acks_late=True, ignore_result=True)
def pump() -> int:
    """Wake parked jobs (none while the account is paused or the breaker is open)."""
    woken = pump_parked(runtime.current())
    if woken:
        log.info("pump: woke %d parked jobs", woken)
    return woken
