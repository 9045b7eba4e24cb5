"""Settings read once from the ``BACKBEAT_*`` environment (docs/DESIGN.md section 7).

Every variable is optional except ``BACKBEAT_API_KEY`` against a real provider; the defaults
run the local demo. Secrets are wrapped in :class:`Secret` so they never print: not in logs,
reprs, tracebacks or Flower.

:data:`SETTINGS` is the one list of variables: name, field, parser, default and meaning.
``from_env``, the defaults of :class:`Settings` and the table in README.md (``python -m
backbeat.config.settings`` prints it; a unit test holds the two equal) are all read from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..provider.profiles import JOB_TYPES, ProviderProfile, get_profile
from .accounts import AccountSpec, read_accounts
from .accounts import single as single_account
from .producers import ProducerSpec, parse_producers
from .redis_urls import is_sentinel, parse_sentinel
from .values import RateSpec, Secret

# -- parsers: (text, variable) -> value; every ValueError names the variable ----------------

def _text(text: str, name: str) -> str:
    return text


def _url(text: str, name: str) -> str:
    return text.rstrip("/")


def _names(text: str, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _secret(text: str, name: str) -> Secret:
    return Secret(text)


def _secrets(text: str, name: str) -> tuple[Secret, ...]:
    return tuple(Secret(token) for token in _names(text, name))


def _provider(text: str, name: str) -> ProviderProfile:
    try:
        return get_profile(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _rate(text: str, name: str) -> RateSpec:
    try:
        return RateSpec.parse(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _integer(minimum: int) -> Callable[[str, str], int]:
    def parse(text: str, name: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}")
        return value

    return parse


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


#: the level names BACKBEAT_LOG_LEVEL takes (Python's standard levels)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: the line formats BACKBEAT_LOG_FORMAT takes (config/logging.py)
LOG_FORMATS = ("text", "json")


def _log_level(text: str, name: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def _log_format(text: str, name: str) -> str:
    fmt = text.lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"{name} must be one of {', '.join(LOG_FORMATS)}, got {text!r}")
    return fmt


def _bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be true or false, got {text!r}")


@dataclass(frozen=True)
class Setting:
    """One ``BACKBEAT_*`` variable: the field it fills, how it reads, its default as written."""

    env: str
    #: the :class:`Settings` field it fills; None: it feeds a derived field (:data:`DERIVED`)
    attr: str | None
    #: (text, env) -> value; ValueError names the variable
    parse: Callable[[str, str], Any]
    #: the default as a user would write it ("" with a ``fallback``: the fallback)
    default: str
    #: the meaning, one line of Markdown
    doc: str
    #: the value when the variable is unset or empty, from the values read before it
    fallback: Callable[[Mapping[str, Any]], Any] | None = None
    #: the docs' default column when ``default`` is not the whole story
    shown: str = ""

    def read(self, environ: Mapping[str, str], earlier: Mapping[str, Any]) -> Any:
        text = environ.get(self.env, self.default).strip()
        if not text and self.fallback is not None:
            return self.fallback(earlier)
        return self.parse(text, self.env)


def deadline_env(job_type: str) -> str:
    """The variable holding one job type's deadline: ``BACKBEAT_DEADLINE_ADD_VOCALS``."""
    return f"BACKBEAT_DEADLINE_{job_type.upper().replace('-', '_')}"


#: every variable, in the order they are read (a fallback reads only rows above it)
SETTINGS: tuple[Setting, ...] = (
    Setting("BACKBEAT_REDIS_URL", "redis_url", _text, "redis://127.0.0.1:6379/0",
            "job store and limiter: `redis://…` or a Sentinel URL "
            "(`redis+sentinel://h1:26379,h2:26379/0?master_name=…`, see `docs/OPERATIONS.md`)"),
    Setting("BACKBEAT_BROKER_URL", "broker_url", _text, "", "Celery broker (same forms)",
            fallback=lambda v: v["BACKBEAT_REDIS_URL"], shown="the Redis URL"),
    Setting("BACKBEAT_PROVIDER", "provider", _provider, "sunoapi", "`kie` or `sunoapi`"),
    Setting("BACKBEAT_API_BASE_URL", "api_base_url", _url, "", "provider base URL",
            fallback=lambda v: v["BACKBEAT_PROVIDER"].base_url.rstrip("/"),
            shown="the profile's official URL"),
    Setting("BACKBEAT_API_KEY", "api_key", _secret, "",
            "provider key (never logged, never in messages or records)"),
    Setting("BACKBEAT_ACCOUNTS", None, _text, "",
            "JSON list of provider accounts `[{\"name\", \"api_key\", \"provider\"?, "
            "\"base_url\"?, \"submit_rate\"?, \"submit_burst\"?, \"poll_rate\"?, \"weight\"?, "
            "\"credit_floor\"?, \"credit_cost\"?, \"webhook_key\"?}]`; omitted fields fall "
            "back to the single-account variables (`credit_cost`: learned); "
            "replaces `BACKBEAT_API_KEY` (see `docs/OPERATIONS.md`, Accounts)",
            shown="one account `default` from `BACKBEAT_API_KEY`"),
    Setting("BACKBEAT_ACCOUNTS_FILE", None, _text, "",
            "the same JSON in a file (a mounted Secret); `BACKBEAT_ACCOUNTS` wins"),
    Setting("BACKBEAT_SUBMIT_RATE", "submit_rate", _rate, "20/10s",
            "submit bucket `N/Ws`: at most N calls in any W-second window"),
    Setting("BACKBEAT_SUBMIT_BURST", "submit_burst", _integer(1), "1",
            "calls that may go back to back (the window still holds)"),
    Setting("BACKBEAT_POLL_RATE", "poll_rate", _rate, "5/1s", "poll bucket (record-info)"),
    Setting("BACKBEAT_CALLBACK_BASE_URL", "callback_base_url", _url, "http://127.0.0.1:8000",
            "public base URL of `web`, for `callBackUrl`"),
    Setting("BACKBEAT_SECRET", "secret", _secret, "", "signs callback URLs and webhooks",
            shown="generated (dev), required in prod"),
    Setting("BACKBEAT_API_TOKENS", "api_tokens", _secrets, "",
            "comma-separated producer bearer tokens; `name:token` names the producer recorded "
            "on each job it creates (a bare token is producer `default`)",
            shown="none: open in dev, closed in prod"),
    Setting("BACKBEAT_PRODUCERS", None, _text, "",
            "JSON object `{\"<producer>\": {\"weight\"?: 1, \"quota\"?: \"N/period\", "
            "\"credit_budget\"?: N}}`: shares of the fleet's rate under backlog, quotas "
            "(429 at enqueue) and credit budgets (402 at enqueue)",
            shown="every producer weight 1, no quota"),
    Setting("BACKBEAT_UNCERTAIN_GRACE", "uncertain_grace_s", _number, "300",
            "seconds an uncertain submission waits for a callback"),
    Setting("BACKBEAT_ENV", "env", _text, "dev",
            "`dev` or `prod` (prod requires `BACKBEAT_SECRET`)"),
    Setting("BACKBEAT_MODELS", "models", _names, "V4_5PLUS,V5",
            "allowed `model` values, comma-separated"),
    Setting("BACKBEAT_DEFAULT_MODEL", "default_model", _text, "V4_5PLUS",
            "`model` when a request names none (one of `BACKBEAT_MODELS`)"),
    Setting("BACKBEAT_KEY_PREFIX", "key_prefix", _text, "bb", "prefix of every Redis key"),
    Setting("BACKBEAT_MAX_ATTEMPTS", "max_attempts", _integer(1), "5",
            "attempts (transient errors, retryable generation failures) before `failed`"),
    Setting("BACKBEAT_CONNECT_TIMEOUT", "connect_timeout_s", _number, "5",
            "seconds to connect to the provider"),
    Setting("BACKBEAT_READ_TIMEOUT", "read_timeout_s", _number, "30",
            "seconds to wait for the provider's answer"),
    Setting("BACKBEAT_POLL_INTERVAL", "poll_interval_s", _number, "2",
            "seconds between reconcile beats"),
    Setting("BACKBEAT_CREDITS_INTERVAL", "credits_interval_s", _number, "60",
            "seconds between reads of the account's credit balance (one read fleet-wide, "
            "through the poll bucket; `backbeat_credits`); 0 disables"),
    Setting("BACKBEAT_CREDIT_FLOOR", "credit_floor", _number, "0",
            "credits below which an account takes no new submission (each account's "
            "`credit_floor` overrides it)"),
    Setting("BACKBEAT_RETENTION_DAYS", "retention_days", _number, "14",
            "days a terminal job record is kept"),
    Setting("BACKBEAT_POLL_MIN_DELAY", "poll_min_delay_s", _number, "10",
            "seconds before a job's first/next poll"),
    Setting("BACKBEAT_POLL_MAX_DELAY", "poll_max_delay_s", _number, "120",
            "longest gap between two polls of a job, seconds"),
    Setting("BACKBEAT_UNCERTAIN_POLICY", "uncertain_policy", _text, "resubmit",
            "`resubmit` or `fail` after the uncertain grace"),
    Setting("BACKBEAT_THROTTLE_COOLDOWN", "throttle_cooldown_s", _number, "2",
            "seconds the fleet waits after a throttle"),
    Setting("BACKBEAT_THROTTLE_BETA", "throttle_beta", _number, "0.85",
            "multiplicative rate cut on a throttle, between 0 and 1"),
    Setting("BACKBEAT_BREAKER_BASE", "breaker_base_s", _number, "15",
            "seconds the 455 breaker first stays open"),
    Setting("BACKBEAT_BREAKER_CAP", "breaker_cap_s", _number, "300",
            "longest breaker open time, seconds"),
    Setting("BACKBEAT_PAUSE_PROBE_INTERVAL", "pause_probe_interval_s", _number, "300",
            "seconds between credits/auth probes while paused"),
    Setting("BACKBEAT_DEADLINE", None, _number, "21600",
            "seconds a job may take before `expired`"),
    *(Setting(deadline_env(job_type), None, _number, "", f"the deadline of `{job_type}` jobs",
              fallback=lambda v: v["BACKBEAT_DEADLINE"], shown="`BACKBEAT_DEADLINE`")
      for job_type in JOB_TYPES),
    Setting("BACKBEAT_OUTBOX_GRACE", "outbox_grace_s", _number, "30",
            "seconds before an unsent message is re-sent"),
    Setting("BACKBEAT_WEBHOOK_ALLOW_PRIVATE", "webhook_allow_private", _bool, "false",
            "allow loopback/private `notify_url` hosts"),
    Setting("BACKBEAT_WEBHOOK_MAX_ATTEMPTS", "webhook_max_attempts", _integer(1), "8",
            "deliveries tried per notification"),
    Setting("BACKBEAT_PROVIDER_WEBHOOK_KEY", "provider_webhook_key", _secret, "",
            "kie `webhookHmacKey`: verify callbacks' `X-Webhook-Signature`"),
    Setting("BACKBEAT_VISIBILITY_TIMEOUT", "visibility_timeout_s", _number, "3600",
            "broker redelivery after a lost worker, seconds (at least 20)"),
    Setting("BACKBEAT_POLLS_SHARE_SUBMIT_WINDOW", "polls_share_submit_window", _bool, "false",
            "record-info polls draw from the submit window too (one N/W rule counts both)"),
    Setting("BACKBEAT_LOG_FORMAT", "log_format", _log_format, "text",
            "`text` (one readable line per record) or `json` (one JSON object per line); "
            "see `docs/OPERATIONS.md`"),
    Setting("BACKBEAT_LOG_LEVEL", "log_level", _log_level, "INFO",
            "least severe log record written: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`"),
)

#: the :class:`Settings` fields no single variable fills, and what they are made of
DERIVED: dict[str, str] = {
    "deadlines_s": "(job type, seconds) per job type: BACKBEAT_DEADLINE_<TYPE>, "
                   "else BACKBEAT_DEADLINE",
    "producers": "BACKBEAT_PRODUCERS, one ProducerSpec per named producer",
    "accounts": "the provider accounts of BACKBEAT_ACCOUNTS, else BACKBEAT_ACCOUNTS_FILE; "
                "() means one account of the single-account variables (account_specs)",
}


def _read(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every variable's value (keyed by variable), each row parsed once, in table order."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        values[setting.env] = setting.read(environ, values)
    return values


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`Settings` keyword arguments for the values of :func:`_read`."""
    fields = {s.attr: values[s.env] for s in SETTINGS if s.attr is not None}
    fields["deadlines_s"] = tuple((t, values[deadline_env(t)]) for t in JOB_TYPES)
    fields["producers"] = parse_producers(values["BACKBEAT_PRODUCERS"])
    fields["accounts"] = read_accounts(
        {"BACKBEAT_ACCOUNTS": values["BACKBEAT_ACCOUNTS"],
         "BACKBEAT_ACCOUNTS_FILE": values["BACKBEAT_ACCOUNTS_FILE"]}, fields)
    return fields


_DEFAULT_VALUES = _read({})
_DEFAULT = _fields(_DEFAULT_VALUES)
#: BACKBEAT_DEADLINE's default, seconds (``deadline_s`` of a type with no deadline of its own)
DEFAULT_DEADLINE_S: float = _DEFAULT_VALUES["BACKBEAT_DEADLINE"]


@dataclass(frozen=True)
class Settings:
    """Every knob of a backbeat process; build with :meth:`from_env` (defaults: SETTINGS)."""

    redis_url: str = _DEFAULT["redis_url"]
    broker_url: str = _DEFAULT["broker_url"]
    provider: ProviderProfile = _DEFAULT["provider"]
    api_base_url: str = _DEFAULT["api_base_url"]
    api_key: Secret = _DEFAULT["api_key"]
    submit_rate: RateSpec = _DEFAULT["submit_rate"]
    submit_burst: int = _DEFAULT["submit_burst"]
    poll_rate: RateSpec = _DEFAULT["poll_rate"]
    callback_base_url: str = _DEFAULT["callback_base_url"]
    secret: Secret = _DEFAULT["secret"]
    api_tokens: tuple[Secret, ...] = _DEFAULT["api_tokens"]
    uncertain_grace_s: float = _DEFAULT["uncertain_grace_s"]
    env: str = _DEFAULT["env"]
    models: tuple[str, ...] = _DEFAULT["models"]
    default_model: str = _DEFAULT["default_model"]
    key_prefix: str = _DEFAULT["key_prefix"]
    max_attempts: int = _DEFAULT["max_attempts"]
    connect_timeout_s: float = _DEFAULT["connect_timeout_s"]
    read_timeout_s: float = _DEFAULT["read_timeout_s"]
    poll_interval_s: float = _DEFAULT["poll_interval_s"]
    credits_interval_s: float = _DEFAULT["credits_interval_s"]
    credit_floor: float = _DEFAULT["credit_floor"]
    retention_days: float = _DEFAULT["retention_days"]
    poll_min_delay_s: float = _DEFAULT["poll_min_delay_s"]
    poll_max_delay_s: float = _DEFAULT["poll_max_delay_s"]
    uncertain_policy: str = _DEFAULT["uncertain_policy"]
    throttle_cooldown_s: float = _DEFAULT["throttle_cooldown_s"]
    throttle_beta: float = _DEFAULT["throttle_beta"]
    breaker_base_s: float = _DEFAULT["breaker_base_s"]
    breaker_cap_s: float = _DEFAULT["breaker_cap_s"]
    pause_probe_interval_s: float = _DEFAULT["pause_probe_interval_s"]
    deadlines_s: tuple[tuple[str, float], ...] = _DEFAULT["deadlines_s"]
    outbox_grace_s: float = _DEFAULT["outbox_grace_s"]
    webhook_allow_private: bool = _DEFAULT["webhook_allow_private"]
    webhook_max_attempts: int = _DEFAULT["webhook_max_attempts"]
    provider_webhook_key: Secret = _DEFAULT["provider_webhook_key"]
    visibility_timeout_s: float = _DEFAULT["visibility_timeout_s"]
    polls_share_submit_window: bool = _DEFAULT["polls_share_submit_window"]
    log_format: str = _DEFAULT["log_format"]
    log_level: str = _DEFAULT["log_level"]
    #: BACKBEAT_ACCOUNTS(_FILE); () is one account of the single-account fields
    accounts: tuple[AccountSpec, ...] = _DEFAULT["accounts"]
    #: BACKBEAT_PRODUCERS (a producer not listed: weight 1, no quota, no budget)
    producers: tuple[ProducerSpec, ...] = _DEFAULT["producers"]

    def producer(self, name: str) -> ProducerSpec:
        """The share and limits of producer ``name``."""
        return next((p for p in self.producers if p.name == name), ProducerSpec(name))

    @property
    def account_specs(self) -> tuple[AccountSpec, ...]:
        """The provider accounts this deployment submits through, in configured order."""
        return self.accounts or (single_account(self.__dict__),)

    def deadline_s(self, job_type: str) -> float:
        """Seconds a job of ``job_type`` may take before it expires."""
        return dict(self.deadlines_s).get(job_type, DEFAULT_DEADLINE_S)

    @property
    def is_prod(self) -> bool:
        return self.env == "prod"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``BACKBEAT_*`` from ``environ`` (default: os.environ); ValueError on bad values."""
        settings = cls(**_fields(_read(os.environ if environ is None else environ)))
        if settings.default_model not in settings.models:
            raise ValueError(f"BACKBEAT_DEFAULT_MODEL {settings.default_model!r} "
                             "is not in BACKBEAT_MODELS")
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


#: every unset variable's meaning, parsed once from SETTINGS
DEFAULTS = Settings()
#: DEFAULTS' job deadline and record retention in ms, for code with no Settings at hand
DEFAULT_DEADLINE_MS: int = int(DEFAULT_DEADLINE_S * 1000)
DEFAULT_RETENTION_MS: int = int(DEFAULTS.retention_days * 86_400_000)


def markdown_table() -> str:
    """SETTINGS as the Markdown table of README.md: variable | meaning | default."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.shown or (f"`{s.default}`" if s.default else "—")
        rows.append(f"| `{s.env}` | {s.doc} | {default} |")
    return "\n".join(rows) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()


if __name__ == "__main__":
    print(markdown_table(), end="")
