"""Settings read once from the ``BACKBEAT_*`` environment (DESIGN.md section 7).

Every variable is optional except ``BACKBEAT_API_KEY`` against a real provider; the defaults
run the local demo. Secrets are wrapped in :class:`Secret` so they never print: not in logs,
reprs, tracebacks or Flower.

========================  ==========================================  ===========================
variable                  meaning                                     default
========================  ==========================================  ===========================
BACKBEAT_REDIS_URL        job store and limiter (or a Sentinel URL)   redis://127.0.0.1:6379/0
BACKBEAT_BROKER_URL       Celery broker (or a Sentinel URL)           the Redis URL
BACKBEAT_PROVIDER         ``kie`` or ``sunoapi``                      sunoapi
BACKBEAT_API_BASE_URL     provider base URL                           the profile's official URL
BACKBEAT_API_KEY          provider key (never logged)                 (empty)
BACKBEAT_SUBMIT_RATE      submit bucket, ``N/Ws``                     20/10s
BACKBEAT_SUBMIT_BURST     calls that may go back to back              1
BACKBEAT_POLL_RATE        poll bucket (record-info)                   5/1s
BACKBEAT_CALLBACK_BASE_URL public base URL of the gateway             http://127.0.0.1:8000
BACKBEAT_SECRET           signs callback URLs and webhooks            generated (dev only)
BACKBEAT_API_TOKENS       comma-separated producer bearer tokens      none = closed except dev
BACKBEAT_UNCERTAIN_GRACE  seconds an uncertain submission waits       300
BACKBEAT_ENV              ``dev`` or ``prod`` (prod requires secrets)  dev
BACKBEAT_MODELS           allowed ``model`` values                    V4_5PLUS,V5
BACKBEAT_DEFAULT_MODEL    ``model`` when a request names none         V4_5PLUS
BACKBEAT_KEY_PREFIX       prefix of every Redis key                   bb
BACKBEAT_MAX_ATTEMPTS     attempts (transient errors, retryable      5
                          generation failures) before ``failed``
BACKBEAT_CONNECT_TIMEOUT  seconds to connect to the provider          5
BACKBEAT_READ_TIMEOUT     seconds to wait for the provider's answer   30
BACKBEAT_POLL_INTERVAL    seconds between reconcile beats             2
BACKBEAT_RETENTION_DAYS   days a terminal job record is kept          14
BACKBEAT_POLL_MIN_DELAY   seconds before a job's first/next poll      10
BACKBEAT_POLL_MAX_DELAY   longest gap between two polls of a job      120
BACKBEAT_UNCERTAIN_POLICY ``resubmit`` or ``fail`` after the grace    resubmit
BACKBEAT_THROTTLE_COOLDOWN seconds the fleet waits after a throttle   2
BACKBEAT_THROTTLE_BETA    multiplicative rate cut on a throttle       0.7
BACKBEAT_BREAKER_BASE     seconds the 455 breaker first stays open    15
BACKBEAT_BREAKER_CAP      longest breaker open time, seconds          300
BACKBEAT_PAUSE_PROBE_INTERVAL seconds between credits/auth probes     300
BACKBEAT_DEADLINE         seconds a job may take before ``expired``   21600
BACKBEAT_DEADLINE_ADD_INSTRUMENTAL / _ADD_VOCALS  per-type deadline   BACKBEAT_DEADLINE
BACKBEAT_OUTBOX_GRACE     seconds before an unsent message is re-sent 30
BACKBEAT_WEBHOOK_ALLOW_PRIVATE  allow loopback/private notify_url      false
BACKBEAT_WEBHOOK_MAX_ATTEMPTS   deliveries tried per notification      8
BACKBEAT_PROVIDER_WEBHOOK_KEY   kie ``webhookHmacKey``: verify callbacks (empty)
BACKBEAT_VISIBILITY_TIMEOUT     broker redelivery after a lost worker, s 3600
BACKBEAT_POLLS_SHARE_SUBMIT_WINDOW  polls draw from the submit window too  false
========================  ==========================================  ===========================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from ..provider.profiles import ProviderProfile, get_profile
from .redis_urls import is_sentinel, parse_sentinel


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``'***'``; ``reveal()`` does not."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self):  # pragma: no cover - refuse to travel in pickles / messages
        raise TypeError("Secret values must not be serialised")


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


@dataclass(frozen=True)
class RateSpec:
    """A provider rule ``N/Ws``: at most ``limit`` calls in any ``window_ms`` window."""

    limit: int
    window_ms: int

    @classmethod
    def parse(cls, text: str) -> RateSpec:
        """Parse ``20/10s``, ``5/1s``, ``5/s``, ``100/m``, ``1000/1h``, ``3/500ms``."""
        m = _RATE.match(text or "")
        if not m:
            raise ValueError(f"rate {text!r} is not of the form N/Ws (e.g. 20/10s)")
        limit, amount, unit = int(m.group(1)), m.group(2), m.group(3) or "s"
        window_ms = int(float(amount or 1) * _UNIT_MS[unit])
        if limit < 1 or window_ms < 1:
            raise ValueError(f"rate {text!r} must allow at least 1 call in a positive window")
        return cls(limit, window_ms)

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_ms / 1000:g}s"


@dataclass(frozen=True)
class Settings:
    """Every knob of a backbeat process; build with :meth:`from_env`."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""
    provider: ProviderProfile = field(default_factory=lambda: get_profile("sunoapi"))
    api_base_url: str = ""
    api_key: Secret = field(default_factory=lambda: Secret(""))
    submit_rate: RateSpec = RateSpec(20, 10_000)
    submit_burst: int = 1
    poll_rate: RateSpec = RateSpec(5, 1_000)
    callback_base_url: str = "http://127.0.0.1:8000"
    secret: Secret = field(default_factory=lambda: Secret(""))
    api_tokens: tuple[Secret, ...] = ()
    uncertain_grace_s: float = 300.0
    env: str = "dev"
    models: tuple[str, ...] = ("V4_5PLUS", "V5")
    default_model: str = "V4_5PLUS"
    key_prefix: str = "bb"
    max_attempts: int = 5
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    poll_interval_s: float = 2.0
    retention_days: float = 14.0
    poll_min_delay_s: float = 10.0
    poll_max_delay_s: float = 120.0
    uncertain_policy: str = "resubmit"
    throttle_cooldown_s: float = 2.0
    throttle_beta: float = 0.7
    breaker_base_s: float = 15.0
    breaker_cap_s: float = 300.0
    pause_probe_interval_s: float = 300.0
    deadlines_s: tuple[tuple[str, float], ...] = (("add-instrumental", 21600.0),
                                                  ("add-vocals", 21600.0))
    outbox_grace_s: float = 30.0
    webhook_allow_private: bool = False
    webhook_max_attempts: int = 8
    provider_webhook_key: Secret = field(default_factory=lambda: Secret(""))
    visibility_timeout_s: float = 3600.0
    #: record-info polls take their grants from the submit bucket's log as well (for a
    #: provider whose one N/W rule counts polls and submissions together)
    polls_share_submit_window: bool = False

    def deadline_s(self, job_type: str) -> float:
        """Seconds a job of ``job_type`` may take before it expires."""
        return dict(self.deadlines_s).get(job_type, 21600.0)

    @property
    def is_prod(self) -> bool:
        return self.env == "prod"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``BACKBEAT_*`` from ``environ`` (default: os.environ); ValueError on bad values."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return env.get(f"BACKBEAT_{name}", default).strip()

        provider = get_profile(get("PROVIDER", "sunoapi"))
        redis_url = get("REDIS_URL", cls.redis_url)
        models = tuple(m.strip() for m in get("MODELS", "V4_5PLUS,V5").split(",") if m.strip())
        default_model = get("DEFAULT_MODEL", "V4_5PLUS")
        if default_model not in models:
            raise ValueError(f"BACKBEAT_DEFAULT_MODEL {default_model!r} is not in BACKBEAT_MODELS")
        settings = cls(
            redis_url=redis_url,
            broker_url=get("BROKER_URL", redis_url),
            provider=provider,
            api_base_url=get("API_BASE_URL", provider.base_url).rstrip("/"),
            api_key=Secret(get("API_KEY")),
            submit_rate=RateSpec.parse(get("SUBMIT_RATE", "20/10s")),
            submit_burst=_int(get("SUBMIT_BURST", "1"), "SUBMIT_BURST", minimum=1),
            poll_rate=RateSpec.parse(get("POLL_RATE", "5/1s")),
            callback_base_url=get("CALLBACK_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
            secret=Secret(get("SECRET")),
            api_tokens=tuple(Secret(t.strip()) for t in get("API_TOKENS").split(",") if t.strip()),
            uncertain_grace_s=_float(get("UNCERTAIN_GRACE", "300"), "UNCERTAIN_GRACE"),
            env=get("ENV", "dev"),
            models=models,
            default_model=default_model,
            key_prefix=get("KEY_PREFIX", "bb"),
            max_attempts=_int(get("MAX_ATTEMPTS", "5"), "MAX_ATTEMPTS", minimum=1),
            connect_timeout_s=_float(get("CONNECT_TIMEOUT", "5"), "CONNECT_TIMEOUT"),
            read_timeout_s=_float(get("READ_TIMEOUT", "30"), "READ_TIMEOUT"),
            poll_interval_s=_float(get("POLL_INTERVAL", "2"), "POLL_INTERVAL"),
            retention_days=_float(get("RETENTION_DAYS", "14"), "RETENTION_DAYS"),
            poll_min_delay_s=_float(get("POLL_MIN_DELAY", "10"), "POLL_MIN_DELAY"),
            poll_max_delay_s=_float(get("POLL_MAX_DELAY", "120"), "POLL_MAX_DELAY"),
            uncertain_policy=get("UNCERTAIN_POLICY", "resubmit"),
            throttle_cooldown_s=_float(get("THROTTLE_COOLDOWN", "2"), "THROTTLE_COOLDOWN"),
            throttle_beta=_float(get("THROTTLE_BETA", "0.7"), "THROTTLE_BETA"),
            breaker_base_s=_float(get("BREAKER_BASE", "15"), "BREAKER_BASE"),
            breaker_cap_s=_float(get("BREAKER_CAP", "300"), "BREAKER_CAP"),
            pause_probe_interval_s=_float(get("PAUSE_PROBE_INTERVAL", "300"),
                                          "PAUSE_PROBE_INTERVAL"),
            deadlines_s=tuple(
                (kind, _float(get(f"DEADLINE_{kind.upper().replace('-', '_')}",
                                  get("DEADLINE", "21600")), "DEADLINE"))
                for kind in ("add-instrumental", "add-vocals")),
            outbox_grace_s=_float(get("OUTBOX_GRACE", "30"), "OUTBOX_GRACE"),
            webhook_allow_private=_bool(get("WEBHOOK_ALLOW_PRIVATE", "false"),
                                        "WEBHOOK_ALLOW_PRIVATE"),
            webhook_max_attempts=_int(get("WEBHOOK_MAX_ATTEMPTS", "8"), "WEBHOOK_MAX_ATTEMPTS",
                                      minimum=1),
            provider_webhook_key=Secret(get("PROVIDER_WEBHOOK_KEY")),
            visibility_timeout_s=_float(get("VISIBILITY_TIMEOUT", "3600"), "VISIBILITY_TIMEOUT"),
            polls_share_submit_window=_bool(get("POLLS_SHARE_SUBMIT_WINDOW", "false"),
                                            "POLLS_SHARE_SUBMIT_WINDOW"),
        )
        for name, url in (("REDIS_URL", settings.redis_url), ("BROKER_URL", settings.broker_url)):
            if is_sentinel(url):  # a malformed Sentinel URL fails here, naming the variable
                try:
                    parse_sentinel(url)
                except ValueError as exc:
                    raise ValueError(f"BACKBEAT_{name}: {exc}") from None
        if settings.env not in ("dev", "prod"):
            raise ValueError("BACKBEAT_ENV must be 'dev' or 'prod'")
        if settings.uncertain_policy not in ("resubmit", "fail"):
            raise ValueError("BACKBEAT_UNCERTAIN_POLICY must be 'resubmit' or 'fail'")
        if settings.visibility_timeout_s < 20:
            raise ValueError("BACKBEAT_VISIBILITY_TIMEOUT must be at least 20 seconds")
        if not 0 < settings.throttle_beta < 1:
            raise ValueError("BACKBEAT_THROTTLE_BETA must be between 0 and 1")
        if settings.is_prod and not settings.secret:
            raise ValueError("BACKBEAT_SECRET is required when BACKBEAT_ENV=prod")
        return settings


def _int(text: str, name: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"BACKBEAT_{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"BACKBEAT_{name} must be >= {minimum}")
    return value


def _bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"BACKBEAT_{name} must be true or false, got {text!r}")


def _float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"BACKBEAT_{name} must be a number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"BACKBEAT_{name} must be >= 0")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()
