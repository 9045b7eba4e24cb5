"""HTTP routes for jobs: create, list, read, cancel, retry."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from werkzeug.exceptions import HTTPException

from ..workers import jobs
from ..workers.errors import (
    BudgetExceeded,
    Conflict,
    JobNotFound,
    QuotaExceeded,
    ValidationError,
)
from ..workers.runtime import Runtime
from ..workers.states import JobState
from .auth import require_token
from .schemas import JOB_COMPONENTS, ErrorOut, JobOut, JobPage, ListArgs

IDEMPOTENCY_HEADER = {"in": "header", "name": "Idempotency-Key", "required": False,
                      "schema": {"type": "string", "maxLength": 200,
                                 "pattern": "^[A-Za-z0-9._:\\-]+$"}}
_REFS = {job_type: f"#/components/schemas/{name}" for job_type, name in JOB_COMPONENTS.items()}
#: the request body: one component per job type, chosen by ``type`` (api/schemas.py)
JOB_REQUEST_BODY = {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [{"$ref": ref} for ref in _REFS.values()],
    "discriminator": {"propertyName": "type", "mapping": _REFS}}}}}


class PaymentRequired(HTTPException):
    """402: the producer's credit budget cannot pay for the job (BACKBEAT_PRODUCERS)."""

    code = 402
    description = "the producer's credit budget cannot pay for this job"


@contextmanager
def _job_errors() -> Iterator[None]:
    """The job calls' refusals as HTTP answers: no such job 404, a Conflict (wrong state,
    idempotency key reused) 409."""
    try:
        yield
    except JobNotFound as err:
        abort(404, message=str(err))
    except Conflict as err:
        abort(409, message=str(err))


def jobs_blueprint(rt: Runtime) -> Blueprint:
    blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Generation jobs")

    @blp.before_request
    def _producer() -> None:
        g.producer = require_token(rt)  # the token's name: the producer of what it creates

    @blp.route("")
    class Jobs(MethodView):
        @blp.doc(security=[{"bearer": []}], parameters=[IDEMPOTENCY_HEADER],
                 requestBody=JOB_REQUEST_BODY)
        @blp.response(202, JobOut)
        @blp.alt_response(409, schema=ErrorOut, description="idempotency key reused")
        @blp.alt_response(422, schema=ErrorOut, description="invalid request (field messages)")
        @blp.alt_response(402, schema=ErrorOut,
                          description="the producer's credit budget cannot pay for the job")
        @blp.alt_response(429, schema=ErrorOut,
                          description="the producer's quota is reached (Retry-After)")
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
                job, created = jobs.enqueue(rt, body, producer=g.producer)
            except ValidationError as err:
                abort(422, errors={"json": err.messages})
            except BudgetExceeded as err:
                refused = PaymentRequired()  # werkzeug has no 402 of its own for abort()
                refused.data = {"message": str(err), "errors": {"json": {"_schema": [str(err)]}}}
                raise refused from None
            except QuotaExceeded as err:
                retry_after = max(1, math.ceil(err.retry_after_s))
                abort(429, message=str(err), headers={"Retry-After": str(retry_after)},
                      errors={"json": {"_schema": [str(err)]}})
            except Conflict as err:  # IdempotencyConflict
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
            with _job_errors():
                return _public(jobs.get(rt, job_id), history=True)

        @blp.doc(security=[{"bearer": []}])
        @blp.response(200, JobOut)
        @blp.alt_response(404, schema=ErrorOut, description="no such job")
        @blp.alt_response(409, schema=ErrorOut, description="already submitted: cannot cancel")
        def delete(self, job_id: str) -> Any:
            """Cancel a job that has not been submitted yet."""
            with _job_errors():
                return jobs.cancel(rt, job_id).to_public()

    @blp.route("/<job_id>/retry", methods=["POST"])
    @blp.doc(security=[{"bearer": []}])
    @blp.response(202, JobOut)
    @blp.alt_response(404, schema=ErrorOut, description="no such job")
    @blp.alt_response(409, schema=ErrorOut, description="not failed or expired")
    def retry(job_id: str) -> Any:
        """Requeue a failed or expired job (dead letter) with a fresh retry budget."""
        with _job_errors():
            return jobs.retry(rt, job_id).to_public()

    def _public(job: Any, history: bool) -> dict:
        out = job.to_public()
        if history:
            out["history"] = rt.store.history(job.id)
            out["queue"] = jobs.queue_position(rt, job)
        return out

    return blp
