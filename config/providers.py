"""Provider profiles: which answer code means what, per provider (DESIGN.md section 3)."""

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
    transient: frozenset[int]
    #: situation -> code this provider answers with (simulator side)
    emits: dict[str, int] = field(default_factory=dict)
    #: callback codes after which regenerating usually works (credits refunded etc.)
    retryable_callback_codes: frozenset[int] = frozenset()

    def outcome_for(self, code: int) -> Outcome:
        """Map one answer code (body code, or HTTP status when the body has none)."""
        if code == 200:
            return Outcome.ACCEPTED
        for codes, outcome in (
            (self.throttle, Outcome.THROTTLED),
            (self.maintenance, Outcome.MAINTENANCE),
            (self.credits, Outcome.CREDITS),
            (self.auth, Outcome.UNAUTHORIZED),
            (self.rejected, Outcome.REJECTED),
        ):
            if code in codes:
                return outcome
        return Outcome.TRANSIENT


KIE = ProviderProfile(
    name="kie",
    base_url="https://api.kie.ai",
    throttle=frozenset({429}),
    maintenance=frozenset({455}),
    credits=frozenset({402}),
    auth=frozenset({401}),
    rejected=frozenset({400, 409, 413, 422, 451}),
    transient=frozenset({500, 501, 502, 503, 504, 505}),
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
)

SUNOAPI = ProviderProfile(
    name="sunoapi",
    base_url="https://api.sunoapi.org",
    throttle=frozenset({430, 405}),
    maintenance=frozenset({455}),
    credits=frozenset({429}),
    auth=frozenset({401}),
    rejected=frozenset({400, 413}),
    transient=frozenset({500, 502, 503, 504}),
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
)

PROFILES: dict[str, ProviderProfile] = {p.name: p for p in (KIE, SUNOAPI)}

#: the two create endpoints and the lookup, identical on both providers
ENDPOINTS: dict[str, str] = {
    "add-instrumental": "/api/v1/generate/add-instrumental",
    "add-vocals": "/api/v1/generate/add-vocals",
    "record-info": "/api/v1/generate/record-info",
}

#: record-info statuses (identical lists on both providers)
UPSTREAM_STATUSES = (
    "PENDING",
    "TEXT_SUCCESS",
    "FIRST_SUCCESS",
    "SUCCESS",
    "CREATE_TASK_FAILED",
    "GENERATE_AUDIO_FAILED",
    "CALLBACK_EXCEPTION",
    "SENSITIVE_WORD_ERROR",
)


def get_profile(name: str) -> ProviderProfile:
    """Return the profile called ``name``; ValueError names the valid choices."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; choose one of {sorted(PROFILES)}") from None
