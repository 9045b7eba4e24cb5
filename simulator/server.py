"""HTTP layer: the request handler, the threading server and SimServer."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..provider.profiles import CREATE_PATHS, ENDPOINTS
from .admin import PREFIX, handle_admin
from .config import SimConfig
from .provider import Answer, Simulator

log = logging.getLogger(__name__)

#: request bodies above this size are refused (bytes)
MAX_BODY_BYTES = 1 << 20
#: longest a held answer (``hold_polls``) waits for its release before the connection closes
HOLD_MAX_S = 300.0
#: path -> endpoint key of the two create endpoints
#: create path -> job type
CREATE_ROUTES = {path: job_type for job_type, path in CREATE_PATHS.items()}
RECORD_INFO_PATH = ENDPOINTS["record-info"]


class _Handler(BaseHTTPRequestHandler):
    """One connection; keep-alive, every answer JSON with a Content-Length."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "backbeat-sim"
    sys_version = ""
    #: idle keep-alive connections are closed after this many seconds
    timeout = 120
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _serve(self) -> None:
        """Read the body, route, answer; never lets an exception reach the client."""
        sim = self.server.sim
        try:
            raw = self._read_body()
        except (ValueError, OSError) as exc:
            self.close_connection = True
            self._send(sim.error("invalid", sim.config, f"bad request body: {exc}"))
            return
        try:
            answer = self._route(sim, raw)
        except Exception:
            log.exception("simulator failed on %s %s", self.command, self.path)
            answer = sim.error("server_error", sim.config)
        self._send(answer)

    def _route(self, sim: Simulator, raw: bytes) -> Answer:
        """Pick the endpoint for method and path."""
        parts = urlsplit(self.path)
        path, method = parts.path, self.command
        auth = self.headers.get("Authorization")
        if method == "POST" and path in CREATE_ROUTES:
            return sim.create(CREATE_ROUTES[path], auth, raw)
        if method == "GET" and path == RECORD_INFO_PATH:
            task_id = (parse_qs(parts.query).get("taskId") or [None])[0]
            return sim.record_info(task_id, auth)
        if method == "GET" and path == sim.profile.credit_path:
            return sim.credit(auth)
        if path.startswith(PREFIX):
            answer = handle_admin(sim, method, path, raw)
            if answer is not None:
                return answer
        return sim.not_found()

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked); ValueError when malformed or huge."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        size = int(length)
        if not 0 <= size <= MAX_BODY_BYTES:
            raise ValueError("Content-Length out of range")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        """Decode a chunked body, discarding trailers."""
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, answer: Answer) -> None:
        """Wait the answer's delay, then write it, or drop the connection."""
        if answer.delay_s > 0 and self.server.stopping.wait(answer.delay_s):
            self.close_connection = True
            return
        if answer.hold is not None and not self._released(answer.hold):
            self.close_connection = True
            return
        if answer.drop:
            self.close_connection = True
            return
        data = json.dumps(answer.body, ensure_ascii=False).encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away (e.g. it timed out first)
            self.close_connection = True

    def _released(self, hold: threading.Event) -> bool:
        """Wait until ``hold`` is set (True), or the server stops or HOLD_MAX_S pass (False)."""
        deadline = time.monotonic() + HOLD_MAX_S
        while not hold.wait(0.1):
            if self.server.stopping.is_set() or time.monotonic() > deadline:
                return False
        return True

    def version_string(self) -> str:
        """The Server header."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Per-request log lines only when verbose."""
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class _HTTPServer(ThreadingHTTPServer):
    """Thread per connection; tracks open connections so stop() can close them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Simulator, verbose: bool) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sim = sim
        self.verbose = verbose
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open client connection."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)


class SimServer:
    """The provider simulator on a real socket.

    Example: ``with SimServer(SimConfig(profile="kie")) as sim: requests.get(sim.url + ...)``.
    Port 0 binds a free port; ``url`` is known after ``start()``.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.sim = Simulator(config or SimConfig())
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> SimConfig:
        """The current configuration (knobs included)."""
        return self.sim.config

    def start(self) -> SimServer:
        """Bind, start serving in a background thread and start callback delivery."""
        if self._httpd is None:
            cfg = self.sim.config
            self._httpd = _HTTPServer((cfg.host, cfg.port), self.sim, cfg.verbose)
            self.sim.callbacks.start()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                name="sim-http", daemon=True,
            )
            self._thread.start()
        return self

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9000``."""
        host = self.sim.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving, close open connections and stop callback delivery."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(5)
        self.sim.callbacks.stop()

    def serve_forever(self, stop_event: threading.Event | None = None) -> None:
        """Serve until ``stop_event`` is set (or KeyboardInterrupt), then stop."""
        self.start()
        event = stop_event or threading.Event()
        try:
            while not event.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stats(self) -> dict[str, Any]:
        """The /__stats document, without HTTP."""
        return self.sim.stats()

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time, as POST /__faults does."""
        return self.sim.set_knobs(knobs)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
