"""Read-only figures for operators: limiter and backlog state of one provider account."""

from __future__ import annotations

from typing import Any

from .runtime import Runtime


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
