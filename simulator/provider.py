"""The simulated provider: create and record-info calls turned into answers, faults included."""

from __future__ import annotations

import hmac
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..provider.profiles import get_profile
from .callbacks import CallbackSender
from .config import SimConfig
from .ledger import Ledger
from .tasks import callback_plan, plan_task, record_info_data
from .validation import Invalid, parse_body, validate

#: msg sent with each error situation (kie wording where it is known)
MESSAGES = {
    "throttled": "Your call frequency is too high. Please try again later.",
    "maintenance": "The system is currently undergoing maintenance. Please try again later.",
    "credits": "The current credits are insufficient. Please top up.",
    "unauthorized": "You do not have access permissions",
    "server_error": "Server error, please try again later.",
    "not_found": "Not found: wrong method or path",
}
#: situations whose HTTP status equals the body code when ``http_status_errors`` is on
_HTTP_STATUS_SITUATIONS = frozenset({"throttled", "credits", "maintenance", "unauthorized"})


@dataclass
class Answer:
    """What the HTTP layer should do: wait ``delay_s``, then answer, or drop the connection."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    #: close the socket without writing anything
    drop: bool = False
    #: when set, the answer waits (after ``delay_s``) until this event is set
    hold: threading.Event | None = None


def envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """The providers' answer shape."""
    return {"code": code, "msg": msg, "data": data}


class Simulator:
    """Provider behaviour behind the HTTP handler; thread-safe through the ledger's lock."""

    def __init__(self, config: SimConfig) -> None:
        self.initial = config
        self.config = config
        self.profile = get_profile(config.profile)
        self.ledger = Ledger()
        self.rng = random.Random(config.seed)
        self.callbacks = CallbackSender(self.ledger, lambda: self.config)
        #: set whenever ``hold_polls`` is off: held record-info answers go out then
        self.released = threading.Event()
        self._apply_hold()

    # -- answers -------------------------------------------------------------------------

    def answer_code(self, code: int, cfg: SimConfig) -> Answer:
        """An answer with one code of the profile's documented table and its wording (the
        ``create_code`` / ``record_info_code`` knobs): HTTP 200 with the code in the body, or
        the code as HTTP status too for 404 and 5xx, and for every code with
        ``http_status_errors``."""
        status = code if cfg.http_status_errors or code == 404 or code >= 500 else 200
        return Answer(status, envelope(code, self.profile.codes.get(code, "error")),
                      delay_s=cfg.latency_ms / 1000)

    def error(self, situation: str, cfg: SimConfig, msg: str | None = None) -> Answer:
        """An error answer for ``situation`` with the profile's code."""
        code = self.profile.emits[situation]
        status = 200
        if situation in ("server_error", "not_found"):
            status = code
        elif cfg.http_status_errors and situation in _HTTP_STATUS_SITUATIONS:
            status = code
        headers = {}
        if situation == "throttled" and cfg.retry_after_s is not None:
            headers["Retry-After"] = str(math.ceil(cfg.retry_after_s))
        body = envelope(code, msg or MESSAGES[situation])
        return Answer(status, body, headers, delay_s=cfg.latency_ms / 1000)

    def _authorized(self, cfg: SimConfig, authorization: str | None) -> bool:
        """True when no key is configured or the bearer token is one of them (each compared
        in constant time, all of them every time)."""
        if not cfg.keys:
            return True
        given = (authorization or "").encode("utf-8", "replace")
        matches = [hmac.compare_digest(given, f"Bearer {key}".encode()) for key in cfg.keys]
        return any(matches)

    def _draw(self, *rates: float) -> list[bool]:
        """One shared-generator draw per rate: True with that probability."""
        with self.ledger.lock:
            return [self.rng.random() < rate for rate in rates]

    # -- create --------------------------------------------------------------------------

    def create(self, endpoint: str, authorization: str | None, raw: bytes) -> Answer:
        """Handle POST add-instrumental / add-vocals in the documented order of checks."""
        cfg = self.config
        drop, server_error, slow = self._draw(
            cfg.drop_rate, cfg.server_error_rate, cfg.accept_timeout_rate
        )
        try:
            body: dict[str, Any] | Invalid = parse_body(raw)
        except Invalid as exc:
            body = exc
        title = body.get("title") if isinstance(body, dict) else None
        title = title if isinstance(title, str) else None
        # the call's key (its Authorization header): its own window, balance and counts; a
        # key the simulator does not accept has none (and is answered 401 in its turn)
        key, authorized = authorization or "", self._authorized(cfg, authorization)

        def record(**call: Any) -> None:
            self.ledger.record_call(key, authorized, endpoint=endpoint, title=title, **call)

        def reject(outcome: str, msg: str | None = None, t: float | None = None) -> Answer:
            answer = self.error(outcome, cfg, msg)
            record(t=time.monotonic() if t is None else t, code=answer.body["code"],
                   taskId=None, outcome=outcome)
            return answer

        if drop and not cfg.drop_after_accept:
            record(t=time.monotonic(), code=None, taskId=None, outcome="dropped")
            return Answer(drop=True)
        if cfg.create_code is not None:
            answer = self.answer_code(cfg.create_code, cfg)
            record(t=time.monotonic(), code=cfg.create_code, taskId=None, outcome="forced")
            return answer
        if cfg.maintenance:
            return reject("maintenance")
        if server_error:
            return reject("server_error")
        if not authorized:
            return reject("unauthorized")
        if cfg.credits_exhausted:
            return reject("credits")
        if self.ledger.balance(key, cfg.credits_balance) < cfg.credit_cost:
            return reject("credits")
        try:
            if isinstance(body, Invalid):
                raise body
            validate(endpoint, body, cfg.profile, cfg.title_max, cfg.refused_words)
        except Invalid as exc:
            return reject(exc.situation, str(exc))
        admitted, t = self.ledger.admit_create(*cfg.rate_for(key), key=key)
        if not admitted:
            return reject("throttled", t=t)
        return self._accept(endpoint, body, title, cfg, t, drop, slow, key)

    def _accept(
        self, endpoint: str, body: dict[str, Any], title: str | None, cfg: SimConfig,
        t: float, drop: bool, slow: bool, key: str = "",
    ) -> Answer:
        """Create and charge the task, schedule its callbacks, then answer (or not)."""
        outcome = "dropped_after_accept" if drop else "timeout_after_accept" if slow else "accepted"
        # one step under the ledger's lock: a reader sees the task, its call record and every
        # count they make together, or none of them
        with self.ledger.lock:
            task_id = f"{self.rng.getrandbits(128):032x}"
            task = plan_task(task_id, endpoint, body, cfg, self.rng, t)
            if not task.refunded:  # kie's 531 gives the credits back: charge nothing
                self.ledger.charge(key, cfg.credits_balance, cfg.credit_cost)
            self.ledger.add_task(task, key)
            self._schedule_callbacks(task, cfg)
            self.ledger.record_call(
                key, t=t, endpoint=endpoint, code=None if drop else 200, title=title,
                taskId=task_id, outcome=outcome,
            )
        if drop:
            return Answer(drop=True)
        delay = cfg.latency_ms / 1000 + (cfg.accept_timeout_sleep_s if slow else 0.0)
        return Answer(200, envelope(200, "success", {"taskId": task_id}), delay_s=delay)

    def _schedule_callbacks(self, task: Any, cfg: SimConfig) -> None:
        """Queue every stage callback of a new task, deciding losses and duplicates now."""
        if not cfg.callbacks_enabled:
            return
        for offset, kind in callback_plan(task):
            lost, duplicate = self._draw(cfg.callback_loss_rate, cfg.callback_duplicate_rate)
            self.callbacks.schedule(task, kind, task.accepted_t + offset, lost, duplicate)

    # -- record-info ---------------------------------------------------------------------

    def record_info(self, task_id: str | None, authorization: str | None) -> Answer:
        """Handle GET record-info and log it (GET /__polls) at its arrival time."""
        t = time.monotonic()
        answer, counter = self._record_info(task_id, authorization, t)
        self.ledger.record_poll(task_id, int(answer.body.get("code", answer.status))
                                if isinstance(answer.body, dict) else answer.status, counter, t)
        return answer

    def _record_info(self, task_id: str | None, authorization: str | None,
                     t: float) -> tuple[Answer, str | None]:
        """GET record-info: faults, auth, unknown task, poll windows, then the data. Returns
        the answer and the poll counter it adds beside ``polls`` (counted with the poll's log
        entry, so the counts and the log agree at any moment)."""
        cfg = self.config
        (server_error,) = self._draw(cfg.server_error_rate)
        if cfg.record_info_code is not None:
            return self.answer_code(cfg.record_info_code, cfg), "forced_codes"
        if cfg.maintenance:
            return self.error("maintenance", cfg), None
        if server_error:
            return self.error("server_error", cfg), None
        if not self._authorized(cfg, authorization):
            return self.error("unauthorized", cfg), None
        task = self.ledger.task(task_id) if task_id else None
        if task is None:
            return self.error("invalid", cfg, "task not found"), "polls_unknown_task"
        key = authorization or ""
        owner = self.ledger.owner(task.task_id)
        if len(cfg.keys) > 1 and owner is not None and owner != key:
            # an account sees only its own tasks: another key's task id is unknown to it
            return self.error("invalid", cfg, "task not found"), "polls_other_key"
        account = cfg.rate_for(key) if cfg.polls_count_in_window else None
        limit, window_s = cfg.poll_limit_per_s, cfg.poll_window_s
        if not self.ledger.admit_poll(task.task_id, limit, window_s, account, now=t, key=key):
            return self.error("throttled", cfg), "polls_throttled"
        data = record_info_data(task, time.monotonic())
        answer = Answer(200, envelope(200, "success", data), delay_s=cfg.latency_ms / 1000,
                        hold=self.released if cfg.hold_polls else None)
        return answer, None

    # -- credits -------------------------------------------------------------------------

    def credit(self, authorization: str | None) -> Answer:
        """GET the profile's credit endpoint: the key's balance as ``data`` (free of charge).

        Checked as record-info is (neither provider says more of this endpoint than its codes):
        maintenance, a 5xx draw, the key; then, with ``polls_count_in_window``, the call takes
        a place in its key's window (the throttle code when it is full), as a poll does.
        Counted in ``credit_checks`` (and ``credit_checks_throttled``) at its arrival."""
        cfg = self.config
        t = time.monotonic()
        self.ledger.count("credit_checks")
        (server_error,) = self._draw(cfg.server_error_rate)
        if cfg.maintenance:
            return self.error("maintenance", cfg)
        if server_error:
            return self.error("server_error", cfg)
        if not self._authorized(cfg, authorization):
            return self.error("unauthorized", cfg)
        if cfg.polls_count_in_window and not self.ledger.admit_account(
                *cfg.rate_for(authorization or ""), now=t, key=authorization or ""):
            self.ledger.count("credit_checks_throttled")
            return self.error("throttled", cfg)
        balance = self.ledger.balance(authorization or "", cfg.credits_balance)
        data = int(balance) if float(balance).is_integer() else balance
        return Answer(200, envelope(200, "success", data), delay_s=cfg.latency_ms / 1000)

    # -- admin ---------------------------------------------------------------------------

    def not_found(self) -> Answer:
        """Envelope 404 for any other method or path."""
        self.ledger.count("not_found")
        return self.error("not_found", self.config)

    def stats(self) -> dict[str, Any]:
        """The /__stats document: every call together at the top level, and each API key's
        own figures in ``by_key`` (by its masked name; see ``Ledger.by_key``)."""
        cfg = self.config
        out = {"profile": cfg.profile}
        with self.ledger.lock:  # the counters and the pending events of one moment
            out.update(self.ledger.stats(
                cfg.rate_limit, cfg.rate_window_s, keys=[f"Bearer {k}" for k in cfg.keys],
                rate_for=cfg.rate_for, start_balance=cfg.credits_balance))
            out.update(credits_balance=cfg.credits_balance, credit_cost=cfg.credit_cost)
            out["callbacks_pending"] = self.callbacks.pending()
        return out

    def set_knobs(self, updates: dict[str, Any]) -> dict[str, Any]:
        """Merge knob values (ValueError on unknown/bad ones); returns the new knobs."""
        with self.ledger.lock:
            self.config = self.config.with_knobs(updates)
            self._apply_hold()
            if "credits_balance" in updates:
                self.ledger.refill()
            if "seed" in updates:
                self.rng.seed(self.config.seed)
            return self.config.knobs()

    def reset(self, faults: bool = False) -> None:
        """Forget calls, tasks, windows and pending callbacks; ``faults`` restores the knobs."""
        with self.ledger.lock:
            self.callbacks.clear()
            self.ledger.reset()
            if faults:
                self.config = self.initial
                self._apply_hold()
            self.rng.seed(self.config.seed)

    def _apply_hold(self) -> None:
        """Release held record-info answers unless ``hold_polls`` is on."""
        if self.config.hold_polls:
            self.released.clear()
        else:
            self.released.set()
