"""The HTTP API and callback receiver (Flask + flask-smorest; OpenAPI at /openapi.json).

Run: the Procfile's ``web`` line (gunicorn, threaded workers: the status page's event streams
hold a thread each).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from flask_smorest import Api, abort
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from ..config.logging import configure_logging
from ..config.settings import Settings, get_settings
from ..workers.errors import Conflict, JobNotFound, Unavailable
from ..workers.runtime import Runtime
from .auth import require_token
from .routes_jobs import jobs_blueprint
from .routes_ops import callbacks_blueprint, ops_blueprint
from .routes_status import status_blueprint
from .schemas import job_request_components

log = logging.getLogger(__name__)

#: largest request body accepted, in bytes
MAX_BODY_BYTES = 64 * 1024
#: endpoints open without a bearer token in prod: liveness, the signed callback URLs, and the
#: status page's HTML (no data in it: its script reads /v1/status* with the token)
OPEN_ENDPOINTS = ("ops.healthz", "callbacks.", "status.status_page")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app for ``settings`` (default: the BACKBEAT_* environment)."""
    rt = Runtime(settings or get_settings())
    if settings is None:  # the process's own app (gunicorn's `create_app()`): its logging too
        configure_logging(rt.settings)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="backbeat",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}}},
    )
    api = Api(app)
    for name, schema in job_request_components(rt.settings.models,
                                               rt.settings.default_model).items():
        api.spec.components.schema(name, schema=schema)
    api.register_blueprint(jobs_blueprint(rt))
    api.register_blueprint(callbacks_blueprint(rt))
    api.register_blueprint(ops_blueprint(rt))
    api.register_blueprint(status_blueprint(rt))
    _guards(app, rt)
    _json_errors(app)
    return app


def _guards(app: Flask, rt: Runtime) -> None:
    """Before any route: the prod token check, and JSON nested too deeply to parse refused."""

    @app.before_request
    def closed_in_prod() -> None:
        endpoint = request.endpoint or ""  # no endpoint: the 404/405 answers as it is
        if rt.settings.is_prod and endpoint and not endpoint.startswith(OPEN_ENDPOINTS):
            require_token(rt)

    @app.before_request
    def parseable_json() -> None:
        try:
            request.get_json(silent=True)  # cached: the route reads the same parse
        except RecursionError:
            abort(400, message="request body is nested too deeply",
                  errors={"json": {"_schema": ["Nested too deeply."]}})


def _json_errors(app: Flask) -> None:
    """Every error is JSON with a message; a 500 never shows a traceback."""

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Any:
        payload: dict[str, Any] = {"code": err.code, "status": err.name,
                                   "message": err.description}
        data = getattr(err, "data", None)
        if isinstance(data, dict):
            if "message" in data:
                payload["message"] = data["message"]
            if "errors" in data:
                payload["errors"] = data["errors"]
            elif "messages" in data:  # webargs' field messages (query, body, headers)
                payload["errors"] = data["messages"]
            if isinstance(data.get("headers"), dict):  # e.g. a 429's Retry-After
                return jsonify(payload), err.code, data["headers"]
        return jsonify(payload), err.code

    @app.errorhandler(JobNotFound)
    @app.errorhandler(Conflict)
    def refused(err: Exception) -> Any:  # the routes map these themselves; any other the same
        code, status = (404, "Not Found") if isinstance(err, JobNotFound) else (409, "Conflict")
        return jsonify({"code": code, "status": status, "message": str(err)}), code

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    @app.errorhandler(Unavailable)
    def storage_unavailable(err: Exception) -> Any:
        log.warning("Redis unreachable on %s %s: %s", request.method, request.path,
                    type(err).__name__)
        return jsonify({"code": 503, "status": "Service Unavailable",
                        "message": "job store unreachable; retry (idempotency keys make it "
                                   "safe)"}), 503, {"Retry-After": "1"}

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"code": 500, "status": "Internal Server Error",
                        "message": "internal error; see the server log"}), 500
