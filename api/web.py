"""The HTTP API and callback receiver (Flask + flask-smorest; OpenAPI at /openapi.json).

Run: ``gunicorn 'backbeat.api.web:create_app()' -b 0.0.0.0:$PORT``.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Flask, jsonify, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint, abort
from marshmallow import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from ..config.settings import Settings, get_settings
from ..workers import jobs
from ..workers.callbacks import apply_callback
from ..workers.errors import IdempotencyConflict, InvalidTransition, JobNotFound
from ..workers.runtime import Runtime
from ..workers.schemas import JobRequest
from ..workers.signing import verify, verify_provider_signature
from ..workers.states import JobState
from ..workers.status import limiter_status
from .schemas import (
    CallbackAck,
    ErrorOut,
    Health,
    JobOut,
    JobPage,
    LimiterOut,
    ListArgs,
    PauseIn,
)

log = logging.getLogger(__name__)

#: largest request body accepted, in bytes
MAX_BODY_BYTES = 64 * 1024
IDEMPOTENCY_HEADER = {"in": "header", "name": "Idempotency-Key", "required": False,
                      "schema": {"type": "string", "maxLength": 200,
                                 "pattern": "^[A-Za-z0-9._:\\-]+$"}}


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app for ``settings`` (default: the BACKBEAT_* environment)."""
    rt = Runtime(settings or get_settings())
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
    api.register_blueprint(_jobs_blueprint(rt))
    api.register_blueprint(_callbacks_blueprint(rt))
    api.register_blueprint(_ops_blueprint(rt))
    _json_errors(app)
    return app


def _require_token(rt: Runtime) -> None:
    tokens = rt.settings.api_tokens
    if not tokens:
        if rt.settings.is_prod:
            abort(401, message="the API is closed: set BACKBEAT_API_TOKENS")
        return
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not given or not any(hmac.compare_digest(given.encode(), t.reveal().encode())
                            for t in tokens):
        abort(401, message="missing or invalid bearer token")


def _jobs_blueprint(rt: Runtime) -> Blueprint:
    blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Generation jobs")
    blp.before_request(lambda: _require_token(rt))
    request_schema = JobRequest(models=rt.settings.models,
                                default_model=rt.settings.default_model)

    @blp.route("")
    class Jobs(MethodView):
        @blp.doc(security=[{"bearer": []}], parameters=[IDEMPOTENCY_HEADER],
                 requestBody={"required": True,
                              "content": {"application/json": {"schema": request_schema}}})
        @blp.response(202, JobOut)
        @blp.alt_response(409, schema=ErrorOut, description="idempotency key reused")
        @blp.alt_response(422, schema=ErrorOut, description="invalid request (field messages)")
        def post(self) -> Any:
            """Create a job (``Idempotency-Key`` header or ``idempotency_key`` field)."""
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                abort(422, errors={"json": {"_schema": ["Body must be a JSON object."]}})
            header_key = request.headers.get("Idempotency-Key")
            if header_key is not None:
                if body.get("idempotency_key") not in (None, header_key):
                    abort(422, errors={"json": {"idempotency_key": [
                        "Differs from the Idempotency-Key header."]}})
                body = {**body, "idempotency_key": header_key}
            try:
                job, created = jobs.enqueue(rt, body)
            except ValidationError as err:
                abort(422, errors={"json": err.messages})
            except IdempotencyConflict as err:
                abort(409, message=str(err))
            return job.to_public(), 202, {"Idempotent-Replayed": "false" if created else "true"}

        @blp.doc(security=[{"bearer": []}])
        @blp.arguments(ListArgs, location="query")
        @blp.response(200, JobPage)
        def get(self, args: dict) -> Any:
            """List jobs, newest first; ``state=failed`` is the dead-letter view."""
            state = JobState(args["state"]) if args.get("state") else None
            try:
                found, cursor = rt.store.list(state, args.get("type"), args["limit"],
                                              args.get("cursor"))
            except ValueError:
                abort(422, errors={"query": {"cursor": ["Not a cursor from this API."]}})
            items = [_public(job, args["history"]) for job in found]
            return {"items": items, "next_cursor": cursor}

    @blp.route("/<job_id>")
    class JobById(MethodView):
        @blp.doc(security=[{"bearer": []}])
        @blp.response(200, JobOut)
        @blp.alt_response(404, schema=ErrorOut, description="no such job")
        def get(self, job_id: str) -> Any:
            """Read one job's current state and its history."""
            try:
                return _public(jobs.get(rt, job_id), history=True)
            except JobNotFound as err:
                abort(404, message=str(err))

        @blp.doc(security=[{"bearer": []}])
        @blp.response(200, JobOut)
        @blp.alt_response(404, schema=ErrorOut, description="no such job")
        @blp.alt_response(409, schema=ErrorOut, description="already submitted: cannot cancel")
        def delete(self, job_id: str) -> Any:
            """Cancel a job that has not been submitted yet."""
            try:
                return jobs.cancel(rt, job_id).to_public()
            except JobNotFound as err:
                abort(404, message=str(err))
            except InvalidTransition as err:
                abort(409, message=str(err))

    @blp.route("/<job_id>/retry", methods=["POST"])
    @blp.doc(security=[{"bearer": []}])
    @blp.response(202, JobOut)
    @blp.alt_response(404, schema=ErrorOut, description="no such job")
    @blp.alt_response(409, schema=ErrorOut, description="not failed or expired")
    def retry(job_id: str) -> Any:
        """Requeue a failed or expired job (dead letter) with a fresh retry budget."""
        try:
            return jobs.retry(rt, job_id).to_public()
        except JobNotFound as err:
            abort(404, message=str(err))
        except InvalidTransition as err:
            abort(409, message=str(err))

    def _public(job: Any, history: bool) -> dict:
        out = job.to_public()
        if history:
            out["history"] = rt.store.history(job.id)
        return out

    return blp


def _callbacks_blueprint(rt: Runtime) -> Blueprint:
    blp = Blueprint("callbacks", __name__, url_prefix="/v1/callbacks",
                    description="Provider stage callbacks (signed URLs)")

    @blp.route("/<job_id>", methods=["POST"])
    @blp.doc(parameters=[{"in": "query", "name": "sig", "required": True,
                          "schema": {"type": "string"}}],
             requestBody={"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}}}})
    @blp.response(200, CallbackAck)
    @blp.alt_response(403, description="bad signature")
    def callback(job_id: str) -> Any:
        """Receive one provider callback for a job; answered at once."""
        if not verify(rt.secret, job_id, request.args.get("sig")):
            abort(403, message="bad callback signature")
        payload = request.get_json(silent=True)
        key = rt.settings.provider_webhook_key
        if key and not verify_provider_signature(
                key, payload, request.headers.get("X-Webhook-Timestamp"),
                request.headers.get("X-Webhook-Signature")):
            abort(401, message="bad or missing X-Webhook-Signature")
        try:
            result = apply_callback(rt, job_id, payload)
        except ValidationError as err:
            abort(422, errors={"json": err.messages})
        except LookupError:
            abort(404, message=f"no job {job_id}")
        return {"code": 200, "msg": "applied" if result.applied else "no change",
                "state": result.state}

    return blp


def _ops_blueprint(rt: Runtime) -> Blueprint:
    blp = Blueprint("ops", __name__, description="Health and limiter status")

    @blp.route("/healthz")
    @blp.response(200, Health)
    @blp.alt_response(503, description="Redis unreachable")
    def healthz() -> Any:
        """Liveness: the process answers and Redis answers."""
        try:
            ok = bool(rt.redis.ping())
        except Exception:  # noqa: BLE001 - any Redis failure means unhealthy
            ok = False
        return ({"status": "ok", "redis": True}, 200) if ok else (
            {"status": "degraded", "redis": False}, 503)

    @blp.route("/v1/limiter")
    @blp.doc(security=[{"bearer": []}])
    @blp.response(200, LimiterOut)
    def limiter() -> Any:
        """Limiter and backlog figures for the configured provider account."""
        _require_token(rt)
        return limiter_status(rt)

    @blp.route("/v1/limiter/pause", methods=["POST"])
    @blp.doc(security=[{"bearer": []}])
    @blp.arguments(PauseIn, required=False)
    @blp.response(200, LimiterOut)
    def limiter_pause(args: dict) -> Any:
        """Pause submissions fleet-wide (jobs stay queued) until resumed."""
        _require_token(rt)
        rt.submit_limiter.pause(args.get("reason", "manual"))
        return limiter_status(rt)

    @blp.route("/v1/limiter/resume", methods=["POST"])
    @blp.doc(security=[{"bearer": []}])
    @blp.response(200, LimiterOut)
    def limiter_resume() -> Any:
        """Lift a pause (manual, credits or unauthorized) at once."""
        _require_token(rt)
        rt.submit_limiter.resume()
        return limiter_status(rt)

    @blp.route("/metrics")
    @blp.doc(responses={"200": {"description": "Prometheus text format"}})
    def metrics() -> Any:
        """Prometheus metrics: backlog sizes and duplicate upstream tasks."""
        k, r = rt.keys, rt.redis
        dups = int(r.get(f"{k.prefix}:metrics:duplicate_upstream_tasks") or 0)
        lines = [
            "# TYPE backbeat_jobs_queued gauge", f"backbeat_jobs_queued {r.zcard(k.queued)}",
            "# TYPE backbeat_jobs_in_flight gauge", f"backbeat_jobs_in_flight {r.zcard(k.poll)}",
            "# TYPE backbeat_jobs_uncertain gauge",
            f"backbeat_jobs_uncertain {r.zcard(k.uncertain)}",
            "# TYPE backbeat_duplicate_upstream_tasks_total counter",
            f"backbeat_duplicate_upstream_tasks_total {dups}",
        ]
        return "\n".join(lines) + "\n", 200, {"Content-Type": "text/plain; version=0.0.4"}

    return blp


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
        return jsonify(payload), err.code

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
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
