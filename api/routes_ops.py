"""HTTP routes for provider callbacks and operations: health, limiter, metrics."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_smorest import Blueprint, abort
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..workers.accounts import Account, pick
from ..workers.callbacks import apply_callback
from ..workers.runtime import Runtime
from ..workers.signing import verify, verify_provider_signature
from ..workers.status import limiter_status, metrics_registry
from .auth import require_token
from .schemas import CallbackAck, Health, LimiterOut, PauseIn, ResumeIn


def callbacks_blueprint(rt: Runtime) -> Blueprint:
    blp = Blueprint("callbacks", __name__, url_prefix="/v1/callbacks",
                    description="Provider stage callbacks (signed URLs)")

    @blp.route("/<job_id>", methods=["POST"])
    @blp.doc(parameters=[{"in": "query", "name": "sig", "required": True,
                          "schema": {"type": "string"}}],
             requestBody={"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}}}})
    @blp.response(200, CallbackAck)
    @blp.alt_response(403, description="bad signature")
    @blp.alt_response(401, description="bad or missing X-Webhook-Signature (kie, when set)")
    def callback(job_id: str) -> Any:
        """Receive one provider callback for a job; answered at once. A correctly signed
        callback is answered 200 whatever its shape (what cannot be used is logged and
        ignored, so the provider stops retrying); only a bad signature is refused."""
        if not verify(rt.secret, job_id, request.args.get("sig")):
            abort(403, message="bad callback signature")
        payload = request.get_json(force=True, silent=True)  # whatever its Content-Type
        keys = webhook_keys(rt, job_id)
        if keys and not any(verify_provider_signature(
                key, payload, request.headers.get("X-Webhook-Timestamp"),
                request.headers.get("X-Webhook-Signature")) for key in keys):
            abort(401, message="bad or missing X-Webhook-Signature")
        result = apply_callback(rt, job_id, payload)
        msg = "applied" if result.applied else (result.note if result.note.startswith(
            ("ignored", "no such job")) else "no change")
        return {"code": 200, "msg": msg, "state": result.state}

    return blp


def webhook_keys(rt: Runtime, job_id: str) -> list:
    """The keys a callback for ``job_id`` must be signed with (any one of them): those of
    the accounts that may own its task (the job's own, or any its attempts went through)
    when its account signs callbacks (kie's webhookHmacKey); none for an account that does
    not (sunoapi). A job that is gone or names no configured account: every account's."""
    job = rt.store.get(job_id)
    own = rt.account_named(job.get("account")) if job is not None else None
    if own is not None and not own.spec.webhook_key:
        return []
    tried = set((job.get("accounts_tried") or "").split(",")) if job is not None else set()
    owners = [a for a in rt.accounts if a.name in tried] or list(rt.accounts)
    return [a.spec.webhook_key for a in owners if a.spec.webhook_key]


def ops_blueprint(rt: Runtime) -> Blueprint:
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
        require_token(rt)
        return limiter_status(rt)

    @blp.route("/v1/limiter/pause", methods=["POST"])
    @blp.doc(security=[{"bearer": []}])
    @blp.arguments(PauseIn, required=False)
    @blp.response(200, LimiterOut)
    def limiter_pause(args: dict) -> Any:
        """Pause submissions fleet-wide (jobs stay queued) until resumed: through every
        account, or through the one named ``account`` (its jobs go through the others)."""
        require_token(rt)
        for account in _accounts(args.get("account")):
            account.submit.pause(args.get("reason", "manual"))
        return limiter_status(rt)

    @blp.route("/v1/limiter/resume", methods=["POST"])
    @blp.doc(security=[{"bearer": []}])
    @blp.arguments(ResumeIn, required=False)
    @blp.response(200, LimiterOut)
    def limiter_resume(args: dict) -> Any:
        """Lift a pause (manual, credits or unauthorized) at once: on every account, or on the
        one named ``account``."""
        require_token(rt)
        for account in _accounts(args.get("account")):
            account.submit.resume()
        return limiter_status(rt)

    def _accounts(name: str | None) -> tuple[Account, ...]:
        try:
            return pick(rt.accounts, name)
        except ValueError as exc:
            abort(422, errors={"json": {"account": [str(exc)]}})
            raise  # abort raises

    registry = metrics_registry(rt)  # this app's own registry, read from Redis per scrape

    @blp.route("/metrics")
    @blp.doc(security=[{"bearer": []}],  # in prod only: web.py closes every route but two
             responses={"200": {"description": "Prometheus text format"}})
    def metrics() -> Any:
        """Prometheus metrics of the whole fleet, read from Redis now: jobs by state, queue
        depths, provider calls by outcome, limiter, breaker and pause (docs/OPERATIONS.md)."""
        return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    return blp
