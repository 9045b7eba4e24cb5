"""Backlogs for tests and benchmarks: jobs put where the fleet would have put them."""

from __future__ import annotations

from ..workers.runtime import Runtime


def park_as_sent(rt: Runtime, job_ids: list[str]) -> None:
    """Jobs (created through the store) whose message was sent and taken, then parked by a
    worker because the account is paused: out of the outbox, into the parked set, due now."""
    now_ms = rt.store.now_ms()
    pipe = rt.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.zrem(rt.keys.outbox, job_id)
        pipe.zadd(rt.keys.parked, {job_id: now_ms})
    pipe.execute()
