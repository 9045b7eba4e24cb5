"""Provider profiles: which answer code means what, per provider (docs/PROVIDER-CODES.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What one provider answer means for the job and for the fleet."""

    #: 200 with a taskId: store it, job -> submitted
    ACCEPTED = "accepted"
    #: too fast: the whole cluster slows; job waits, no retry budget spent
    THROTTLED = "throttled"
    #: 455: shared breaker opens; one probe per interval fleet-wide
    MAINTENANCE = "maintenance"
    #: out of credits: submissions paused fleet-wide until resumed
    CREDITS = "credits"
    #: bad or missing key: same pause, operator told clearly
    UNAUTHORIZED = "unauthorized"
    #: 404 "invalid request method or path": a setup error (base URL, path) for the whole
    #: fleet, never one job's fault: the same pause, with its own reason
    NOT_FOUND = "not_found"
    #: provider refused these parameters: job -> failed, never retried
    REJECTED = "rejected"
    #: 5xx, unknown codes, connect errors: bounded retry with jitter
    TRANSIENT = "transient"
    #: sent, then timed out or the connection dropped: the task may exist (and be charged)
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class ProviderProfile:
    """One provider as data: base URL, code sets, and the codes its own server emits.

    The code sets drive classification in the client; the ``emits`` map drives the simulator
    (which code the provider answers for a given situation). Unknown codes are transient.
    """

    name: str
    base_url: str
    throttle: frozenset[int]
    maintenance: frozenset[int]
    credits: frozenset[int]
    auth: frozenset[int]
    rejected: frozenset[int]
    #: situation -> code this provider answers with (simulator side)
    emits: dict[str, int] = field(default_factory=dict)
    #: generation-failure codes (callback ``code``, record-info ``errorCode``) after which
    #: regenerating usually works (credits refunded etc.): the job is resubmitted
    retryable_callback_codes: frozenset[int] = frozenset()
    #: 404 on both providers: "invalid request method or path"
    not_found: frozenset[int] = frozenset({404})
    #: the credits endpoint (GET; ``data`` is the balance)
    credit_path: str = ""
    #: every code the provider documents for create and record-info calls, with its wording
    codes: dict[int, str] = field(default_factory=dict)
    #: every code the provider documents in stage callbacks, with its wording
    callback_codes: dict[int, str] = field(default_factory=dict)
    #: days the provider keeps generated files (audio, images) after creating them
    track_retention_days: float = 14.0

    def outcome_for(self, code: int) -> Outcome:
        """Map one answer code (body code, or HTTP status when the body has none)."""
        if code == 200:
            return Outcome.ACCEPTED
        for codes, outcome in (
            (self.throttle, Outcome.THROTTLED),
            (self.maintenance, Outcome.MAINTENANCE),
            (self.credits, Outcome.CREDITS),
            (self.auth, Outcome.UNAUTHORIZED),
            (self.not_found, Outcome.NOT_FOUND),
            (self.rejected, Outcome.REJECTED),
        ):
            if code in codes:
                return outcome
        return Outcome.TRANSIENT

    def retryable_failure(self, code: object) -> bool:
        """Whether a generation failure with this code (a callback ``code``, a record-info
        ``errorCode``, or the record-info status when it has no code) is worth a new task."""
        text = str(code)
        if text in RETRYABLE_STATUSES:
            return True
        return text.isdigit() and int(text) in self.retryable_callback_codes


#: record-info failure statuses after which a new task usually works (the task was never
#: created); every other failure status is final unless its ``errorCode`` is retryable
RETRYABLE_STATUSES = frozenset({"CREATE_TASK_FAILED"})


KIE = ProviderProfile(
    name="kie",
    base_url="https://api.kie.ai",
    throttle=frozenset({429}),
    maintenance=frozenset({455}),
    credits=frozenset({402}),
    auth=frozenset({401}),
    rejected=frozenset({400, 409, 413, 422, 451, 505}),
    emits={
        "throttled": 429,
        "maintenance": 455,
        "credits": 402,
        "unauthorized": 401,
        "invalid": 422,
        "too_long": 422,
        "not_found": 404,
        "server_error": 500,
    },
    retryable_callback_codes=frozenset({500, 501, 531}),
    credit_path="/api/v1/chat/credit",
    codes={
        200: "Success - Request processed successfully",
        401: "Unauthorized - Authentication credentials missing or invalid",
        402: "Insufficient credits - Account does not have enough credits to perform this "
             "operation",
        404: "Not found - Requested resource or endpoint does not exist",
        409: "Conflict - WAV record already exists",
        422: "Validation error - Request parameters failed validation checks",
        429: "Rate limit exceeded - Request limit for this resource has been exceeded",
        451: "Unauthorized - Failed to retrieve image. Please verify any access restrictions "
             "set by you or your service provider.",
        455: "Service unavailable - System currently undergoing maintenance",
        500: "Server error - Unexpected error occurred while processing request",
        501: "Generation failed",
        505: "Feature disabled",
    },
    callback_codes={
        200: "Success",
        400: "Lyrics contain copyrighted material",
        408: "Timeout",
        413: "Uploaded audio matches an existing work",
        500: "Unexpected server error",
        501: "Audio generation failed",
        531: "Generation failed, credits refunded; please retry",
    },
    track_retention_days=14.0,  # "Generated files will be retained for 14 days"
)

SUNOAPI = ProviderProfile(
    name="sunoapi",
    base_url="https://api.sunoapi.org",
    throttle=frozenset({430, 405}),
    maintenance=frozenset({455}),
    credits=frozenset({429}),
    auth=frozenset({401}),
    rejected=frozenset({400, 413}),
    emits={
        "throttled": 430,
        "maintenance": 455,
        "credits": 429,
        "unauthorized": 401,
        "invalid": 400,
        "too_long": 413,
        "not_found": 404,
        "server_error": 500,
    },
    retryable_callback_codes=frozenset({500}),
    credit_path="/api/v1/generate/credit",
    codes={
        200: "Request successful",
        400: "Invalid parameters",
        401: "Unauthorized access",
        404: "Invalid request method or path",
        405: "Rate limit exceeded",
        413: "Theme or prompt too long",
        429: "Insufficient credits",
        430: "Your call frequency is too high. Please try again later",
        455: "System maintenance",
        500: "Server error",
    },
    callback_codes={
        200: "Success",
        400: "Parameter error or content violation",
        451: "Download failed: could not fetch the related files",
        500: "Server error, please try again later",
    },
    track_retention_days=14.0,  # the docs say 14 and 15 days: the shorter one
)

PROFILES: dict[str, ProviderProfile] = {p.name: p for p in (KIE, SUNOAPI)}

#: every job type backbeat runs -> the create endpoint it calls (identical on both providers);
#: the one list of job types: the API, the CLI, the settings and the simulator's routes read it
CREATE_PATHS: dict[str, str] = {
    "add-instrumental": "/api/v1/generate/add-instrumental",
    "add-vocals": "/api/v1/generate/add-vocals",
}
JOB_TYPES: tuple[str, ...] = tuple(CREATE_PATHS)
#: the create endpoints and the lookup
ENDPOINTS: dict[str, str] = {**CREATE_PATHS, "record-info": "/api/v1/generate/record-info"}


def get_profile(name: str) -> ProviderProfile:
    """Return the profile called ``name``; ValueError names the valid choices."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; choose one of {sorted(PROFILES)}") from None
