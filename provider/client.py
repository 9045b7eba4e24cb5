"""The provider client: one HTTP call, no hidden retries, every answer classified into an Outcome.

The body ``code`` wins; the HTTP status counts only when the body has none
(docs/PROVIDER-CODES.md). A POST that was sent and then timed out or lost its connection is
``UNCERTAIN``: the provider may have created (and charged) the task. Connect failures happen
before anything is sent: ``TRANSIENT``.
Warning: the API key is only ever put in the Authorization header; it is never logged or returned.
"""

from __future__ import annotations

import email.utils
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from .profiles import CREATE_PATHS, ENDPOINTS, Outcome, ProviderProfile


class Revealable(Protocol):
    """A secret that shows its value only when asked (config.settings.Secret)."""

    def reveal(self) -> str: ...


@dataclass(frozen=True)
class Answer:
    """One classified provider answer; ``code``: body code, else HTTP status (None: no answer)."""

    outcome: Outcome
    code: int | None
    message: str
    task_id: str | None = None
    data: Any = None
    retry_after_s: float | None = None


class ProviderError(RuntimeError):
    """A classified answer other than the one asked for (``answer``: outcome, code, message);
    raised by the calls that return a value rather than an :class:`Answer`."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"{answer.outcome.value} ({answer.code}): {answer.message}")
        self.answer = answer


class ProviderClient:
    """Talks to one provider account. Thread-safe enough for one worker process (one Session)."""

    def __init__(
        self,
        profile: ProviderProfile,
        base_url: str,
        api_key: Revealable,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        pool_size: int = 10,
    ) -> None:
        self.profile = profile
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=2, pool_maxsize=pool_size,
            max_retries=Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                              raise_on_status=False, raise_on_redirect=False),
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # The environment is read once, here, not on every call: with ``trust_env`` requests
        # scans every environment variable twice for proxies and looks for ~/.netrc on each
        # request (about 0.5 ms of CPU per call), and a .netrc entry for the provider's host
        # would replace the bearer key. The proxy for the base URL (HTTPS_PROXY, ALL_PROXY,
        # NO_PROXY honoured) and a CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) still apply.
        self.session.trust_env = False
        self.session.proxies = dict(requests.utils.get_environ_proxies(self.base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.session.verify = bundle

    def create(self, job_type: str, params: dict[str, Any], callback_url: str) -> Answer:
        """POST one job of ``job_type`` (a key of CREATE_PATHS): its provider ``params`` and
        the ``callBackUrl`` the provider reports its stages to."""
        body = {**params, "callBackUrl": callback_url}
        return self._call("POST", CREATE_PATHS[job_type], json=body, idempotent=False)

    def record_info(self, task_id: str) -> Answer:
        """GET record-info for one upstream task."""
        return self._call("GET", ENDPOINTS["record-info"], params={"taskId": task_id},
                          idempotent=True)

    def credits_answer(self) -> Answer:
        """GET the profile's credit endpoint (``credit_path``): accepted, the balance (a
        number) is ``data``. Classified as record-info is (a read: a timeout is transient);
        a 200 whose ``data`` is not a number is transient ("answer without a balance")."""
        answer = self._call("GET", self.profile.credit_path, idempotent=True)
        if answer.outcome is not Outcome.ACCEPTED:
            return answer
        balance = parse_balance(answer.data)
        if balance is None:
            return Answer(Outcome.TRANSIENT, answer.code, "answer without a balance",
                          data=answer.data)
        return Answer(answer.outcome, answer.code, answer.message, data=balance)

    def credits(self) -> float | int:
        """The account's credit balance; :class:`ProviderError` carries any other answer."""
        answer = self.credits_answer()
        if answer.outcome is not Outcome.ACCEPTED:
            raise ProviderError(answer)
        return answer.data

    def _call(self, method: str, path: str, idempotent: bool, **kwargs: Any) -> Answer:
        headers = {"Authorization": f"Bearer {self._api_key.reveal()}",
                   "Accept": "application/json"}
        try:
            resp = self.session.request(method, self.base_url + path, headers=headers,
                                        timeout=self.timeout, **kwargs)
        except requests.exceptions.ConnectTimeout:
            return Answer(Outcome.TRANSIENT, None, "connect timeout")
        except requests.exceptions.ReadTimeout:
            outcome = Outcome.TRANSIENT if idempotent else Outcome.UNCERTAIN
            return Answer(outcome, None, "read timeout after the request was sent")
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                return Answer(Outcome.TRANSIENT, None, "connection failed")
            outcome = Outcome.TRANSIENT if idempotent else Outcome.UNCERTAIN
            return Answer(outcome, None, "connection lost after the request was sent")
        except (requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError):
            outcome = Outcome.TRANSIENT if idempotent else Outcome.UNCERTAIN
            return Answer(outcome, None, "answer cut off after the request was sent")
        except requests.exceptions.RequestException as exc:
            return Answer(Outcome.TRANSIENT, None, f"request error: {type(exc).__name__}")
        return self.classify(resp.status_code, _json(resp), resp.headers.get("Retry-After"),
                             expect_task_id=not idempotent)

    def classify(self, status: int, body: Any, retry_after: str | None = None,
                 expect_task_id: bool = False) -> Answer:
        """Turn (HTTP status, parsed body) into an Answer using this provider's code table."""
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, bool) or not isinstance(code, int):
            code = None
        message = str(body.get("msg") or "") if isinstance(body, dict) else ""
        data = body.get("data") if isinstance(body, dict) else None
        wait = parse_retry_after(retry_after)
        if code is None:
            if status == 200:  # HTTP 200 without an envelope: not an answer we can trust
                outcome = Outcome.UNCERTAIN if expect_task_id else Outcome.TRANSIENT
                return Answer(outcome, None, "answer without a code", retry_after_s=wait)
            code = status
        outcome = self.profile.outcome_for(code)
        if outcome is Outcome.ACCEPTED and status != 200:
            outcome = self.profile.outcome_for(status)
            code = status
        task_id = None
        if outcome is Outcome.ACCEPTED and expect_task_id:
            task_id = data.get("taskId") if isinstance(data, dict) else None
            if not task_id:  # accepted (maybe charged) but we cannot name the task
                return Answer(Outcome.UNCERTAIN, code, "accepted without a taskId", data=data)
        return Answer(outcome, code, message or outcome.value, task_id, data, wait)


def parse_balance(value: Any) -> float | int | None:
    """A credit balance as the providers send it (kie: a number, sunoapi: an integer; a
    numeric string is taken too): an int when whole, else a float; None when not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else float(value)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _never_connected(exc: BaseException) -> bool:
    """True when the error shows no byte was sent (refused, unresolvable, unreachable)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, NewConnectionError | NameResolutionError):
            return True
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            cur = reason
            continue
        args = [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]
        cur = args[0] if args else (cur.__cause__ or cur.__context__)
    return False
