"""Producers: who enqueues (``name:token`` entries of ``BACKBEAT_API_TOKENS``) and their
shares (``BACKBEAT_PRODUCERS``).

``BACKBEAT_API_TOKENS=web:tok-1,batch:tok-2,tok-3``: a request with ``tok-1`` is producer
``web``; a bare token (``tok-3``) is producer ``default``. The name is recorded on each job the
producer creates (``producer``). ``BACKBEAT_PRODUCERS`` gives each producer's share of the
fleet's rate under backlog and its limits::

    {"web": {"weight": 3}, "batch": {"weight": 1, "quota": "1000/1h", "credit_budget": 50000}}

A producer not listed has weight 1, no quota and no budget. A bad entry fails at start with
the field named (``BACKBEAT_PRODUCERS.batch.quota: …``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .entries import NAME, NAME_RULE, check_object, load, number
from .values import RateSpec

#: the producer of a bare token, of the Python client and CLI unless they name another, and
#: of every request while the API is open (dev, no tokens)
DEFAULT = "default"
FIELDS = ("weight", "quota", "credit_budget")
#: the smallest weight: deficit round robin visits a lane 1 / weight times per job it takes
MIN_WEIGHT = 0.01


@dataclass(frozen=True)
class ProducerSpec:
    """One producer's share and limits."""

    name: str
    weight: float = 1.0
    #: at most quota.limit jobs created in any quota.window_ms (config.settings.RateSpec)
    quota: RateSpec | None = None
    #: credits its accepted submissions may spend in all (None: no budget)
    credit_budget: float | None = None


def split_token(raw: str) -> tuple[str, str]:
    """``name:token`` -> (name, token); a bare token (no name part of the NAME form before
    its first ':') -> ("default", token)."""
    name, sep, token = raw.partition(":")
    if sep and token and NAME.match(name):
        return name, token
    return DEFAULT, raw


def token_producers(tokens: Iterable[Any]) -> list[tuple[str, Any]]:
    """(producer, token Secret) for each ``BACKBEAT_API_TOKENS`` entry (Secrets in, out)."""
    out = []
    for secret in tokens:
        name, token = split_token(secret.reveal())
        out.append((name, type(secret)(token)))
    return out


def parse_producers(text: str, source: str = "BACKBEAT_PRODUCERS") -> tuple[ProducerSpec, ...]:
    """The producers of the JSON object ``text``; ValueError naming the field."""
    if not text.strip():
        return ()
    entries = load(text, source)
    if not isinstance(entries, dict):
        raise ValueError(f"{source}: must be a JSON object of producer name -> settings")
    out = []
    for name, entry in entries.items():
        where = f"{source}.{name}"
        if not NAME.match(name):
            raise ValueError(f"{where}: a producer's name is {NAME_RULE}")
        entry = check_object(entry, where, FIELDS)
        quota = None
        if "quota" in entry:
            try:
                quota = RateSpec.parse(str(entry["quota"]))
            except ValueError as exc:
                raise ValueError(f"{where}.quota: {exc}") from None
        out.append(ProducerSpec(
            name=name, weight=number(entry, "weight", where, 1.0, minimum=MIN_WEIGHT),
            quota=quota, credit_budget=number(entry, "credit_budget", where, None)))
    return tuple(out)
