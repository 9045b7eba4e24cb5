"""Fixtures for the simulator tests: servers on port 0, a callback receiver, request bodies."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from backbeat.devstack.processes import wait_until as poll_until
from backbeat.simulator import SimConfig, SimServer

#: every wait in these tests gives up after this many seconds
WAIT_S = 60.0


def _wait_until(predicate: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Poll ``predicate`` until truthy (TimeoutError after ``timeout`` seconds)."""
    return poll_until(predicate, timeout, interval=0.02)


class Receiver:
    """A local callback endpoint recording every POST; can answer non-200 on purpose."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)}
                    )
                    status = receiver.fail_with or 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/cb"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def bodies(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """Callback bodies received so far (for one task when given)."""
        with self._lock:
            bodies = [r["body"] for r in self.received]
        return [b for b in bodies if task_id is None or b["data"]["task_id"] == task_id]

    def types(self, task_id: str) -> list[str]:
        """callbackType of each callback received for ``task_id``, in arrival order."""
        return [b["data"]["callbackType"] for b in self.bodies(task_id)]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout=15)``: bounded polling."""
    return _wait_until


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimServer]]:
    """``make_sim(**config)``: a started SimServer on a free port, stopped after the test."""
    servers: list[SimServer] = []

    def make(**config: Any) -> SimServer:
        server = SimServer(SimConfig(**config)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A keep-alive HTTP session."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A callback receiver on a free port."""
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def make_body() -> Callable[..., dict[str, Any]]:
    """``make_body(endpoint, callback_url=..., **fields)``: a valid request body."""

    def make(
        endpoint: str = "add-instrumental",
        callback_url: str = "http://127.0.0.1:9/cb",
        **fields: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "uploadUrl": "https://files.example.com/stem.mp3",
            "title": "Night Drive",
            "negativeTags": "metal",
            "callBackUrl": callback_url,
        }
        if endpoint == "add-instrumental":
            body["tags"] = "synthwave, warm"
        else:
            body.update(prompt="la la la", style="Jazz")
        body.update(fields)
        return {k: v for k, v in body.items() if v is not ...}

    return make
