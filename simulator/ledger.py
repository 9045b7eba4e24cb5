"""The ledger: every call, the sliding windows, the tasks and the counters, under one lock."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .tasks import Task, status_at

#: duplicate_titles keeps at most this many titles
MAX_DUPLICATE_TITLES = 100
#: most record-info polls kept in the poll log (GET /__polls)
MAX_POLL_LOG = 200_000

#: call outcome -> the /__stats counters it adds to
_OUTCOME_COUNTERS: dict[str, tuple[str, ...]] = {
    "accepted": (),
    "timeout_after_accept": ("timeouts_after_accept",),
    "dropped_after_accept": ("dropped",),
    "dropped": ("dropped",),
    "throttled": ("throttled",),
    "invalid": ("invalid",),
    "too_long": ("too_long",),
    "unauthorized": ("unauthorized",),
    "credits": ("credits",),
    "maintenance": ("maintenance",),
    "server_error": ("server_errors",),
    "forced": ("forced_codes",),
}
#: counters always present in /__stats, even at zero
_COUNTERS = (
    "throttled",
    "invalid",
    "too_long",
    "unauthorized",
    "credits",
    "maintenance",
    "server_errors",
    "timeouts_after_accept",
    "dropped",
    "not_found",
    "forced_codes",
    "credit_checks",
    "credit_checks_throttled",
    "polls",
    "polls_throttled",
    "polls_unknown_task",
    "polls_other_key",
    "callbacks_sent",
    "callbacks_failed",
    "callbacks_lost",
    "callbacks_duplicated",
    "callbacks_retried",
)


def _prune(window: deque[float], now: float, window_s: float) -> None:
    """Drop the arrivals that are ``window_s`` or more before ``now``."""
    while window and window[0] <= now - window_s:
        window.popleft()


def window_counts(times: list[float], window_s: float) -> list[int]:
    """For each arrival (in time order), how many arrivals the half-open window of
    ``window_s`` ending at it holds (two pointers, exact)."""
    ordered, out, left = sorted(times), [], 0
    for right, t in enumerate(ordered):
        while t - ordered[left] >= window_s:
            left += 1
        out.append(right - left + 1)
    return out


def _masked(authorization: str) -> str:
    """A key's name in /__stats and /__calls: the last 4 characters of its Authorization
    header ("" for a call without one)."""
    return f"...{authorization[-4:]}" if authorization else ""


@dataclass
class _Account:
    """One API key's create window and counts (keyed by its Authorization header)."""

    #: admitted arrivals still in the key's window (creates, and polls / credit calls with
    #: ``polls_count_in_window``)
    window: deque[float] = field(default_factory=deque)
    #: create calls carrying the key, any outcome
    calls: int = 0
    throttled: int = 0
    #: create calls reaching the key's rate check (admitted or throttled)
    attempt_times: list[float] = field(default_factory=list)
    accepted_times: list[float] = field(default_factory=list)


def _number(value: float) -> float | int:
    """A credit amount as JSON shows it: an integer when it is one."""
    return int(value) if float(value).is_integer() else value


def max_in_window(times: list[float], window_s: float) -> int:
    """Most arrivals in any half-open interval of ``window_s`` seconds."""
    return max(window_counts(times, window_s), default=0)


class Ledger:
    """Thread-safe record of what the simulated provider saw and did.

    ``lock`` is re-entrant and is the only lock: callers that need several steps to be
    atomic (e.g. drawing from the shared random generator) take it around them.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every call, window, task and counter."""
        with self.lock:
            self._calls: list[dict[str, Any]] = []
            self._polls: list[dict[str, Any]] = []
            self._counts: Counter[str] = Counter()
            self._attempt_times: list[float] = []
            self._accepted_times: list[float] = []
            #: Authorization header -> its key's window and counts
            self._accounts: dict[str, _Account] = {}
            self._poll_windows: dict[str, deque[float]] = {}
            self._tasks: dict[str, Task] = {}
            #: task id -> the Authorization header of the create call that made it
            self._owners: dict[str, str] = {}
            self._seen: set[tuple[str, str]] = set()
            self._duplicates = 0
            self._duplicate_titles: list[str] = []
            self._balances: dict[str, float] = {}
            self._charged = 0.0

    def _account(self, key: str) -> _Account:
        """The account of Authorization header ``key`` (created empty on first use)."""
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = _Account()
        return account

    def admit_create(self, limit: int, window_s: float, key: str = "") -> tuple[bool, float]:
        """Count a create attempt of API key ``key`` (its Authorization header) at the rate
        check against that key's window; (admitted?, monotonic time of the check)."""
        with self.lock:
            now = time.monotonic()
            self._attempt_times.append(now)
            account = self._account(key)
            account.attempt_times.append(now)
            return self._admit(account.window, limit, window_s, now), now

    @staticmethod
    def _admit(window: deque[float], limit: int, window_s: float, now: float) -> bool:
        """Take a place in ``window`` at ``now``; False, nothing taken, when it is full."""
        _prune(window, now, window_s)
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    def admit_poll(
        self, task_id: str, limit: int, window_s: float, account: tuple[int, float] | None,
        now: float | None = None, key: str = "",
    ) -> bool:
        """Admit one record-info poll arriving at ``now`` (default: now) against the task's
        window (and, if ``account`` (limit, window_s) is given, key ``key``'s)."""
        with self.lock:
            now = time.monotonic() if now is None else now
            polls = self._poll_windows.setdefault(task_id, deque())
            _prune(polls, now, window_s)
            if len(polls) >= limit:
                return False
            if account is not None and not self.admit_account(*account, now=now, key=key):
                return False
            polls.append(now)
            return True

    def admit_account(self, limit: int, window_s: float, now: float | None = None,
                      key: str = "") -> bool:
        """Admit one call that is not a create (a poll, a credit check) of key ``key``
        arriving at ``now`` (default: now) into that key's window: False, and nothing taken,
        when it is full."""
        with self.lock:
            now = time.monotonic() if now is None else now
            return self._admit(self._account(key).window, limit, window_s, now)

    def balance(self, key: str, start: float) -> float:
        """The credits left on API key ``key`` (``start`` until it is first charged)."""
        with self.lock:
            return self._balances.get(key, start)

    def charge(self, key: str, start: float, cost: float) -> bool:
        """Take ``cost`` credits from ``key``; False (nothing taken) when it has less."""
        with self.lock:
            left = self._balances.get(key, start)
            if left < cost:
                return False
            self._balances[key] = left - cost
            self._charged += cost
            return True

    def refill(self) -> None:
        """Every key back to the starting balance."""
        with self.lock:
            self._balances.clear()

    def add_task(self, task: Task, account: str | None = None) -> bool:
        """Store an accepted (charged) task of API key ``account`` (its Authorization header);
        True when its (endpoint, title) was paid before."""
        key = (task.endpoint, str(task.request.get("title")))
        with self.lock:
            self._tasks[task.task_id] = task
            self._accepted_times.append(task.accepted_t)
            if account is not None:
                self._owners[task.task_id] = account
                self._account(account).accepted_times.append(task.accepted_t)
            duplicate = key in self._seen
            self._seen.add(key)
            if duplicate:
                self._duplicates += 1
                if len(self._duplicate_titles) < MAX_DUPLICATE_TITLES:
                    self._duplicate_titles.append(key[1])
            return duplicate

    def record_call(self, authorization: str = "", account: bool = True, **call: Any) -> None:
        """Append one create call (t, wall, endpoint, code, title, taskId, outcome, and key:
        the masked ``authorization`` it carried) and count it, in its key's counts too when
        ``account`` (the key is one the simulator accepts)."""
        call.setdefault("wall", time.time())
        call["key"] = _masked(authorization)
        with self.lock:
            self._calls.append(call)
            self._counts.update(_OUTCOME_COUNTERS[call["outcome"]])
            if account:
                counts = self._account(authorization)
                counts.calls += 1
                counts.throttled += call["outcome"] == "throttled"

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self.lock:
            self._counts[key] += n

    def task(self, task_id: str) -> Task | None:
        """The task with this id, or None."""
        with self.lock:
            return self._tasks.get(task_id)

    def owner(self, task_id: str) -> str | None:
        """The Authorization header the task was created with (None: not recorded)."""
        with self.lock:
            return self._owners.get(task_id)

    def add_callback_record(self, task: Task, record: dict[str, Any]) -> None:
        """Note one callback delivery (or loss, or failure) on its task."""
        with self.lock:
            task.callbacks.append(record)

    def calls(self) -> list[dict[str, Any]]:
        """A copy of every create call, in arrival order."""
        with self.lock:
            return [dict(c) for c in self._calls]

    def record_poll(self, task_id: str | None, code: int, counter: str | None = None,
                    t: float | None = None) -> None:
        """Count one record-info poll (and ``counter`` beside it) and append it to the poll log
        (t: its arrival, default now; taskId; code), which is capped at MAX_POLL_LOG entries."""
        with self.lock:
            self._counts["polls"] += 1
            if counter:
                self._counts[counter] += 1
            if len(self._polls) < MAX_POLL_LOG:
                self._polls.append({"t": time.monotonic() if t is None else t,
                                    "taskId": task_id, "code": code})

    def polls(self) -> list[dict[str, Any]]:
        """A copy of the poll log, in arrival order."""
        with self.lock:
            return [dict(p) for p in self._polls]

    def stats(
        self, rate_limit: int, rate_window_s: float, keys: Iterable[str] = (),
        rate_for: Callable[[str], tuple[int, float]] | None = None, start_balance: float = 0.0,
    ) -> dict[str, Any]:
        """The /__stats document (``balances``: each key charged since the last refill, by
        the last 4 characters of its Authorization header; any other key has the starting
        balance; ``credits_charged``: every charge since the last reset; ``by_key``: see
        ``by_key``). ``keys``: the configured keys' Authorization headers, listed even unused;
        ``rate_for``: a header's (limit, window_s), default the account's."""
        with self.lock:
            now = time.monotonic()
            by_status = Counter(status_at(t, now) for t in self._tasks.values())
            out: dict[str, Any] = {
                "calls_total": len(self._calls),
                "accepted": len(self._accepted_times),
            }
            out.update({key: self._counts[key] for key in _COUNTERS})
            out.update(
                credits_charged=_number(self._charged),
                balances={_masked(key): _number(left) for key, left in self._balances.items()},
                duplicates_by_title=self._duplicates,
                duplicate_titles=list(self._duplicate_titles),
                max_calls_in_window=max_in_window(self._attempt_times, rate_window_s),
                max_accepted_in_window=max_in_window(self._accepted_times, rate_window_s),
                rate_limit=rate_limit,
                rate_window_s=rate_window_s,
                tasks_total=len(self._tasks),
                tasks=dict(sorted(by_status.items())),
                by_key=self.by_key(keys, rate_for or (lambda _: (rate_limit, rate_window_s)),
                                   start_balance),
            )
            return out

    def by_key(self, keys: Iterable[str], rate_for: Callable[[str], tuple[int, float]],
               start_balance: float) -> dict[str, dict[str, Any]]:
        """Per API key, by its masked name: its create calls (``calls_total``, any outcome),
        ``accepted``, ``throttled``, the most calls reaching its rate check and the most
        accepted ones in any window of its own rule (``max_calls_in_window``,
        ``max_accepted_in_window``), that rule, and its ``balance``. Every configured key
        (``keys``, as Authorization headers) and every other key that made a call the
        simulator accepted the key of (any key when none is configured). Keys sharing their
        last 4 characters (possible only when none is configured) are counted together."""
        with self.lock:
            groups: dict[str, list[str]] = {}
            for header in dict.fromkeys([*keys, *self._accounts, *self._balances]):
                groups.setdefault(_masked(header), []).append(header)
            out: dict[str, dict[str, Any]] = {}
            for label, headers in sorted(groups.items()):
                accounts = [self._accounts[h] for h in headers if h in self._accounts]
                limit, window_s = rate_for(headers[0])
                attempts = [t for a in accounts for t in a.attempt_times]
                accepted = [t for a in accounts for t in a.accepted_times]
                out[label] = {
                    "calls_total": sum(a.calls for a in accounts),
                    "accepted": len(accepted),
                    "throttled": sum(a.throttled for a in accounts),
                    "max_calls_in_window": max_in_window(attempts, window_s),
                    "max_accepted_in_window": max_in_window(accepted, window_s),
                    "rate_limit": limit,
                    "rate_window_s": window_s,
                    "balance": _number(sum(self._balances.get(h, start_balance)
                                           for h in headers)),
                }
            return out
