"""Read-only figures for operators: limiter and backlog state of one provider account."""

from __future__ import annotations

from typing import Any

from .runtime import Runtime


def limiter_status(rt: Runtime) -> dict[str, Any]:
    """Rates, grants in the current window, and backlog sizes (cheap: O(limit) + 3 ZCARDs)."""
    lim, keys, redis = rt.submit_limiter, rt.keys, rt.redis
    now_ms = rt.store.now_ms()
    grants = [int(t) for t in redis.lrange(lim.log_key, 0, -1)]
    return {
        "account": rt.account,
        "submit_rate": str(rt.settings.submit_rate),
        "submit_burst": lim.burst,
        "poll_rate": str(rt.settings.poll_rate),
        "submit_grants_in_window": sum(1 for t in grants if now_ms - t < lim.window_ms),
        "queued": redis.zcard(keys.queued),
        "in_flight": redis.zcard(keys.poll),
        "uncertain": redis.zcard(keys.uncertain),
    }
