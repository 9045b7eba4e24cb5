"""Read-only figures for operators: limiter and backlog state of one provider account, and
the Prometheus metrics (``GET /v1/limiter``, ``GET /metrics``, ``backbeat limiter``)."""

from __future__ import annotations

from typing import Any

from .runtime import Runtime
from .store import DUPLICATES


def limiter_status(rt: Runtime) -> dict[str, Any]:
    """Rates, tokens, cool-downs, breaker, pause and backlog sizes (a handful of commands)."""
    keys, redis = rt.keys, rt.redis
    submit = rt.submit_limiter.state()
    poll = rt.poll_limiter.state()
    return {
        "account": rt.account,
        "provider": rt.settings.provider.name,
        "breaker": submit.pop("breaker"),
        "pause": submit.pop("pause"),
        "submit": submit,
        "poll": {k: v for k, v in poll.items() if k not in ("breaker", "pause")},
        "backlog": {
            "queued": redis.zcard(keys.queued),
            "parked": redis.zcard(keys.parked),
            "in_broker": sum(redis.llen(q) for q in keys.submit_queues),
            "in_flight": redis.zcard(keys.poll),
            "uncertain": redis.zcard(keys.uncertain),
        },
    }


def metrics_text(rt: Runtime) -> str:
    """Prometheus text format: backlog sizes and duplicate upstream tasks."""
    keys, redis = rt.keys, rt.redis
    dups = int(redis.get(keys.metric(DUPLICATES)) or 0)
    lines = [
        "# TYPE backbeat_jobs_queued gauge", f"backbeat_jobs_queued {redis.zcard(keys.queued)}",
        "# TYPE backbeat_jobs_in_flight gauge",
        f"backbeat_jobs_in_flight {redis.zcard(keys.poll)}",
        "# TYPE backbeat_jobs_uncertain gauge",
        f"backbeat_jobs_uncertain {redis.zcard(keys.uncertain)}",
        "# TYPE backbeat_duplicate_upstream_tasks_total counter",
        f"backbeat_duplicate_upstream_tasks_total {dups}",
    ]
    return "\n".join(lines) + "\n"
