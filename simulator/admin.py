"""Admin endpoints (/__stats, /__calls, /__polls, /__tasks/<id>, /__faults, /__reset, ...)."""

from __future__ import annotations

import json
import time
from typing import Any

from .provider import Answer, Simulator
from .tasks import task_info

PREFIX = "/__"


def _json_object(raw: bytes, *, empty_ok: bool) -> dict[str, Any]:
    """Decode an admin request body; ValueError when it is not a JSON object."""
    if not raw.strip() and empty_ok:
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _bad(message: str) -> Answer:
    """HTTP 400 with a message."""
    return Answer(400, {"error": message})


def handle_admin(sim: Simulator, method: str, path: str, raw: bytes) -> Answer | None:
    """Answer an admin request, or None when ``method path`` is not an admin route."""
    route = (method, path)
    if route == ("GET", "/__health"):
        return Answer(200, {"status": "ok", "profile": sim.config.profile, "t": time.monotonic()})
    if route == ("GET", "/__stats"):
        return Answer(200, sim.stats())
    if route == ("GET", "/__calls"):
        return Answer(200, sim.ledger.calls())
    if route == ("GET", "/__polls"):
        return Answer(200, sim.ledger.polls())
    if method == "GET" and path.startswith("/__tasks/"):
        task = sim.ledger.task(path.removeprefix("/__tasks/"))
        if task is None:
            return Answer(404, {"error": "unknown task"})
        with sim.ledger.lock:
            return Answer(200, task_info(task, time.monotonic()))
    if route == ("GET", "/__faults"):
        return Answer(200, sim.config.knobs())
    if route == ("POST", "/__faults"):
        try:
            return Answer(200, sim.set_knobs(_json_object(raw, empty_ok=False)))
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
    if route == ("POST", "/__reset"):
        try:
            body = _json_object(raw, empty_ok=True)
        except ValueError as exc:
            return _bad(str(exc))
        sim.reset(faults=bool(body.get("faults", False)))
        return Answer(200, {"reset": True, "knobs": sim.config.knobs()})
    return None
