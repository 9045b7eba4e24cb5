"""Simulator configuration: one frozen dataclass of settings and run-time knobs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..provider.profiles import get_profile

#: settings fixed at start; every other field is a knob settable through POST /__faults
STATIC_FIELDS = frozenset(
    {"profile", "host", "port", "api_key", "api_keys", "key_rates", "verbose"})

#: knob name -> kind, used to validate values arriving as JSON
_KINDS: dict[str, str] = {
    "http_status_errors": "bool",
    "retry_after_s": "opt_nonneg",
    "rate_limit": "pos_int",
    "rate_window_s": "pos",
    "poll_limit_per_s": "pos_int",
    "poll_window_s": "pos",
    "polls_count_in_window": "bool",
    "text_after_s": "nonneg",
    "first_after_s": "nonneg",
    "complete_after_s": "nonneg",
    "fail_rate": "prob",
    "sensitive_words": "str_list",
    "refused_words": "str_list",
    "title_max": "pos_int",
    "complete_only_rate": "prob",
    "tracks": "pos_int",
    "seed": "opt_int",
    "callbacks_enabled": "bool",
    "callback_loss_rate": "prob",
    "callback_duplicate_rate": "prob",
    "callback_backoff_scale": "nonneg",
    "callback_timeout_s": "pos",
    "webhook_hmac_key": "str",
    "maintenance": "bool",
    "credits_exhausted": "bool",
    "server_error_rate": "prob",
    "accept_timeout_rate": "prob",
    "accept_timeout_sleep_s": "nonneg",
    "drop_rate": "prob",
    "drop_after_accept": "bool",
    "latency_ms": "nonneg",
    "hold_polls": "bool",
    "create_code": "opt_int",
    "record_info_code": "opt_int",
    "fail_status": "str",
    "fail_code": "opt_int",
    "credits_balance": "nonneg",
    "credit_cost": "nonneg",
}

#: what a failing task (``fail_rate``) ends in
FAIL_STATUSES = ("GENERATE_AUDIO_FAILED", "CREATE_TASK_FAILED", "CALLBACK_EXCEPTION")

#: every knob name, sorted (what GET /__faults shows)
KNOBS: tuple[str, ...] = tuple(sorted(_KINDS))


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator does, as data; replaced whole when a knob changes.

    Times are seconds on the monotonic clock unless the name says otherwise (``latency_ms``).
    Probabilities (``*_rate``) are in [0, 1]. Example: ``SimConfig(profile="kie", fail_rate=1)``.
    """

    profile: str = "sunoapi"
    host: str = "127.0.0.1"
    #: 0 picks a free port
    port: int = 0
    #: empty = no auth check; otherwise ``Authorization: Bearer <api_key>`` is required
    api_key: str = field(default="", repr=False)
    #: more accepted keys (an account pool): with ``api_key`` and these, a call must carry one
    #: of them. Each key has its own create window (``rate_limit`` per ``rate_window_s``, or
    #: its ``key_rates`` rule) and its own balance; /__stats names a key by its last 4
    #: characters only (``...abcd``), so those must differ between keys
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: a key's own create window, overriding ``rate_limit`` / ``rate_window_s`` for it:
    #: ``{"<full key>": (limit, window_s)}`` (a mapping or (key, limit, window_s) triples)
    key_rates: tuple[tuple[str, int, float], ...] = field(default=(), repr=False)
    verbose: bool = False
    # -- answers
    http_status_errors: bool = False
    retry_after_s: float | None = None
    # -- account create window and per-task poll window
    rate_limit: int = 20
    rate_window_s: float = 10.0
    poll_limit_per_s: int = 3
    poll_window_s: float = 1.0
    polls_count_in_window: bool = False
    # -- task timeline, measured from acceptance
    text_after_s: float = 1.0
    first_after_s: float = 2.0
    complete_after_s: float = 3.0
    fail_rate: float = 0.0
    sensitive_words: tuple[str, ...] = ()
    #: create calls naming one of these words are refused at once (the profile's "invalid"
    #: code: 400 sunoapi, 422 kie) and no task exists; ``sensitive_words`` accepts, fails later
    refused_words: tuple[str, ...] = ()
    #: longer titles are refused as too long (413 sunoapi, 422 kie)
    title_max: int = 100
    complete_only_rate: float = 0.0
    tracks: int = 2
    seed: int | None = None
    # -- callbacks
    callbacks_enabled: bool = True
    callback_loss_rate: float = 0.0
    callback_duplicate_rate: float = 0.0
    #: multiplies the retry backoff (0.5 s, 1 s, 2 s)
    callback_backoff_scale: float = 1.0
    callback_timeout_s: float = 15.0
    webhook_hmac_key: str = field(default="", repr=False)
    # -- faults
    maintenance: bool = False
    credits_exhausted: bool = False
    server_error_rate: float = 0.0
    accept_timeout_rate: float = 0.0
    accept_timeout_sleep_s: float = 35.0
    drop_rate: float = 0.0
    drop_after_accept: bool = False
    latency_ms: float = 0.0
    #: record-info answers are decided when the call arrives and sent once this is off again
    #: (a poll in flight across an outside event, e.g. a deadline)
    hold_polls: bool = False
    #: every create call is answered with this code of the profile's documented table (its
    #: documented wording as ``msg``; no task, nothing charged), e.g. 405 on sunoapi, 409 or
    #: 451 on kie, 404 on both; None: the normal checks
    create_code: int | None = None
    #: every record-info call is answered with this documented code; None: the normal answer
    record_info_code: int | None = None
    #: the status a failing task (``fail_rate``) ends in: GENERATE_AUDIO_FAILED (its error
    #: callback and errorCode), CREATE_TASK_FAILED (early, at the text stage; errorCode null
    #: unless ``fail_code``, callback code 500 unless ``fail_code``) or CALLBACK_EXCEPTION (the
    #: audio exists and record-info shows it, but the final callback never comes)
    fail_status: str = "GENERATE_AUDIO_FAILED"
    #: the code of a failing task's error callback and record-info errorCode (e.g. kie 531,
    #: which refunds the task's credits); None: the profile's usual one (kie 501, sunoapi 400)
    fail_code: int | None = None
    #: every API key's starting balance (GET the profile's credit endpoint; ``balances`` in
    #: /__stats); setting it refills every key. Large: a run never spends it unless told to
    credits_balance: float = 10_000_000.0
    #: credits one accepted create call costs its key (0: free; kie's 531 refunds it); a key
    #: whose balance is below it is answered the profile's credits code (kie 402, sunoapi
    #: 429). The providers document a charge per accepted request, not its size: 10 is ours
    credit_cost: float = 10.0

    def __post_init__(self) -> None:
        profile = get_profile(self.profile)
        for name, kind in _KINDS.items():
            object.__setattr__(self, name, _check(name, kind, getattr(self, name)))
        self._check_keys()
        for name in ("create_code", "record_info_code"):
            code = getattr(self, name)
            if code is not None and (code == 200 or code not in profile.codes):
                raise ValueError(f"{name} must be an error code of the {profile.name} table: "
                                 f"{sorted(c for c in profile.codes if c != 200)}")
        if self.fail_status not in FAIL_STATUSES:
            raise ValueError(f"fail_status must be one of {list(FAIL_STATUSES)}")
        if self.fail_code == 200:
            raise ValueError("fail_code must be a failure code")
        if not self.text_after_s <= self.first_after_s <= self.complete_after_s:
            raise ValueError("need text_after_s <= first_after_s <= complete_after_s")

    def _check_keys(self) -> None:
        """Normalise ``api_keys`` and ``key_rates`` (ValueError without naming a key)."""
        if not isinstance(self.api_key, str):
            raise ValueError("api_key must be a string")
        keys = self.api_keys
        if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
            raise ValueError("api_keys must be a list of strings")
        pool = tuple(dict.fromkeys(k for k in (self.api_key, *keys) if k))
        object.__setattr__(self, "api_keys", tuple(k for k in pool if k != self.api_key))
        labels = [f"Bearer {k}"[-4:] for k in pool]
        if len(set(labels)) != len(labels):
            raise ValueError("api keys must differ in their last 4 characters (their name in "
                             "/__stats)")
        rates = self.key_rates
        items = rates.items() if isinstance(rates, Mapping) else (
            (entry[0], entry[1:]) for entry in rates)
        out = []
        for key, rule in items:
            if not isinstance(key, str) or not key:
                raise ValueError("key_rates must name each key by its full text")
            if pool and key not in pool:
                raise ValueError(f"key_rates names a key that is not configured (...{key[-4:]})")
            if len(rule) != 2:
                raise ValueError("key_rates must give each key (limit, window_s)")
            limit = _check("key_rates limit", "pos_int", rule[0])
            out.append((key, limit, _check("key_rates window_s", "pos", rule[1])))
        object.__setattr__(self, "key_rates", tuple(out))

    @property
    def keys(self) -> tuple[str, ...]:
        """Every accepted API key (``api_key`` first); empty: no auth check."""
        return (self.api_key, *self.api_keys) if self.api_key else self.api_keys

    def rate_for(self, authorization: str) -> tuple[int, float]:
        """The create window (limit, window_s) of the key an Authorization header carries."""
        for key, limit, window_s in self.key_rates:
            if authorization == f"Bearer {key}":
                return limit, window_s
        return self.rate_limit, self.rate_window_s

    def knobs(self) -> dict[str, Any]:
        """The run-time knobs as JSON-ready values (the HMAC key masked)."""
        out = {name: getattr(self, name) for name in KNOBS}
        out["sensitive_words"] = list(self.sensitive_words)
        out["refused_words"] = list(self.refused_words)
        if self.webhook_hmac_key:
            out["webhook_hmac_key"] = "***"
        return out

    def with_knobs(self, updates: dict[str, Any]) -> SimConfig:
        """A copy with ``updates`` merged in; ValueError names an unknown knob or bad value."""
        unknown = sorted(set(updates) - set(_KINDS))
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; known: {list(KNOBS)}")
        return dataclasses.replace(self, **updates)


def _check(name: str, kind: str, value: Any) -> Any:
    """Validate one knob value and return it normalised; ValueError says what is wrong."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value
    if kind == "str_list":
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings")
        return tuple(value)
    if value is None and kind.startswith("opt_"):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    if kind in ("pos_int", "opt_int"):
        if value != int(value):
            raise ValueError(f"{name} must be an integer")
        if kind == "pos_int" and value < 1:
            raise ValueError(f"{name} must be >= 1")
        return int(value)
    if kind == "prob" and not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1")
    if kind == "pos" and value <= 0:
        raise ValueError(f"{name} must be > 0")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return float(value)
