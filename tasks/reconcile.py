"""``backbeat.reconcile``: the beat-scheduled poller that settles upstream task states."""

from __future__ import annotations

import logging
from dataclasses import asdict

from ..workers import runtime
from ..workers.app import app
from ..workers.reconcile import run_cycle

log = logging.getLogger(__name__)


@app.task(name="backbeat.reconcile", acks_late=True, ignore_result=True)
def reconcile() -> dict:
    """Poll the jobs that are due (leased, so overlapping cycles never poll one job twice)."""
    report = asdict(run_cycle(runtime.current()))
    if report["claimed"] or report["uncertain_settled"]:
        log.info("reconcile: %s", report)
    return report
