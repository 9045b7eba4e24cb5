"""The status page (``GET /``) and what it reads: the fleet's picture (``GET /v1/status``) and
a server-sent event stream of transitions and pictures (``GET /v1/status/stream``).

The page itself is a static file with no data in it, so it is open like ``/healthz``; its
script asks the two data routes with the bearer token (from the URL fragment ``#token=...``
or typed in), which never reaches a server log. The stream is read with ``fetch`` rather than
``EventSource`` because only ``fetch`` can send the ``Authorization`` header.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

from flask import Response, request, stream_with_context
from flask_smorest import Blueprint
from redis.exceptions import RedisError

from ..workers.overview import overview, window_history
from ..workers.runtime import Runtime
from .auth import require_token

log = logging.getLogger(__name__)

#: one stream lasts this long at most, then the page reconnects (from the last event id): a
#: stream never holds a web thread for good, and a restarted web process is found again
STREAM_S = 55.0
#: a fresh picture this often on the stream
PICTURE_EVERY_S = 1.0
#: transitions a new stream (no Last-Event-ID) starts with, so the page is not empty
BACKFILL = 40
#: a Last-Event-ID older than this (seconds) starts a new stream instead of replaying
STALE_ID_S = 300
#: event streams one web process serves at once; one more is answered 503 (the page then
#: reads GET /v1/status every few seconds until a stream is free)
MAX_STREAMS = 4
#: the page, packaged beside this module (api/page/status.html)
PAGE = "status.html"


def _sse(event: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Pictures:
    """The picture, computed at most once per ``every_s`` in a process and shared by all its
    streams (a dozen open pages cost Redis what one does), and a cap on the streams a process
    serves at once (each holds a thread: the rest of the API keeps the others)."""

    def __init__(self, rt: Runtime, every_s: float = PICTURE_EVERY_S,
                 max_streams: int = MAX_STREAMS) -> None:
        self.rt, self.every_s, self.max_streams = rt, every_s, max_streams
        self.slots = threading.BoundedSemaphore(max_streams)
        self._lock = threading.Lock()
        self._at, self._picture = float("-inf"), {}

    def now(self) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._at >= self.every_s:
                self._picture, self._at = overview(self.rt), time.monotonic()
            return self._picture


def event_stream(rt: Runtime, last_id: str | None, seconds: float = STREAM_S,
                 every_s: float = PICTURE_EVERY_S,
                 pictures: Pictures | None = None) -> Iterator[str]:
    """Server-sent events for ``seconds``: ``history`` (the submit window over the last
    minutes, when ``last_id`` is None), ``transition`` (one per job transition, after
    ``last_id``, or the latest BACKFILL when None or older than STALE_ID_S) and ``overview``
    (the picture, every ``every_s``); ``unavailable`` while Redis does not answer. Ends by
    itself."""
    pictures = pictures or Pictures(rt, every_s)
    yield "retry: 1000\n\n"
    deadline = time.monotonic() + seconds
    next_picture = 0.0
    while True:
        now = time.monotonic()
        try:
            if last_id is not None and _ms(last_id) < rt.store.now_ms() - STALE_ID_S * 1000:
                last_id = None  # a tab asleep for long: start afresh, not with its backlog
            if last_id is None:
                yield _sse("history", window_history(rt))
                backfill = rt.store.latest_events(BACKFILL)
                for stream_id, ev in backfill:
                    yield _sse("transition", ev, stream_id)
                last_id = backfill[-1][0] if backfill else "0-0"
            if now >= next_picture:
                yield _sse("overview", pictures.now())
                next_picture = now + every_s
            if now >= deadline:
                return
            wait_ms = max(10, int((min(next_picture, deadline) - now) * 1000))
            for stream_id, ev in rt.store.read_events(last_id, block_ms=wait_ms, count=200):
                last_id = stream_id
                yield _sse("transition", ev, stream_id)
        except RedisError as err:  # unreachable, a timeout, READONLY during a failover, ...
            log.warning("status stream: Redis unavailable (%s)", type(err).__name__)
            yield _sse("unavailable", {"message": "job store unavailable; retrying"})
            if time.monotonic() >= deadline:
                return
            time.sleep(every_s)
        except Exception:  # noqa: BLE001 - a bug: logged once, the stream ends (no traceback out)
            log.exception("status stream failed")
            yield _sse("unavailable", {"message": "status stream failed; see the server log"})
            return


def status_blueprint(rt: Runtime) -> Blueprint:
    blp = Blueprint("status", __name__, description="The status page and its live figures")
    page = resources.files(__package__).joinpath("page", PAGE).read_bytes()
    pictures = Pictures(rt, PICTURE_EVERY_S, MAX_STREAMS)

    @blp.route("/")
    @blp.doc(responses={"200": {"description": "The status page (HTML, no data in it)",
                                "content": {"text/html": {}}}})
    def status_page() -> Any:
        """The fleet's status page: jobs by state, the submit window against the provider's
        rule, breaker and pause, the latest transitions, failures and duplicates; live."""
        return page, 200, {"Content-Type": "text/html; charset=utf-8",
                           "Cache-Control": "no-store",
                           "Content-Security-Policy": "default-src 'self'; "
                           "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "frame-ancestors 'none'"}

    @blp.route("/v1/status")
    @blp.doc(security=[{"bearer": []}],
             responses={"200": {"description": "The fleet's picture now (docs/OPERATIONS.md)",
                                "content": {"application/json": {}}}})
    def status() -> Any:
        """The picture the status page draws: jobs by state, the submit window against the
        rule, throttles, breaker, pause, the latest failures and paid duplicates."""
        require_token(rt)
        return pictures.now()

    @blp.route("/v1/status/stream")
    @blp.doc(security=[{"bearer": []}],
             parameters=[{"in": "header", "name": "Last-Event-ID", "required": False,
                          "schema": {"type": "string"}}],
             responses={"200": {"description": "Server-sent events: transition, overview, "
                                               "unavailable; the stream ends after a minute",
                                "content": {"text/event-stream": {}}}})
    def status_stream() -> Any:
        """Every job transition as it happens and the picture every second, as server-sent
        events; send ``Last-Event-ID`` to go on after a reconnect."""
        require_token(rt)
        last_id = request.headers.get("Last-Event-ID") or None
        if last_id is not None and not _is_stream_id(last_id):
            last_id = None
        if not pictures.slots.acquire(blocking=False):
            return ({"code": 503, "status": "Service Unavailable",
                     "message": f"this process serves {pictures.max_streams} status streams "
                                "already; read GET /v1/status meanwhile"},
                    503, {"Retry-After": "10"})
        def held() -> Iterator[str]:
            try:
                yield from event_stream(rt, last_id, STREAM_S, PICTURE_EVERY_S, pictures)
            finally:  # stream_with_context starts the generator at once: this runs on close
                pictures.slots.release()

        return Response(stream_with_context(held()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return blp


def _ms(stream_id: str) -> int:
    return int(stream_id.partition("-")[0])


def _is_stream_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and seq.isdigit() and len(value) <= 41
