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

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: what a producer's name may be: it is written on jobs, in Redis keys and metric labels
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: the producer of a bare token, of the Python client and CLI unless they name another, and
#: of every request while the API is open (dev, no tokens)
DEFAULT = "default"
FIELDS = ("weight", "quota", "credit_budget")


@dataclass(frozen=True)
class ProducerSpec:
    """One producer's share and limits."""

    name: str
    weight: float = 1.0
    #: at most quota.limit jobs created in any quota.window_ms (config.settings.RateSpec)
    quota: Any = None
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
    from .settings import RateSpec  # settings imports this module

    if not text.strip():
        return ()
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno} column "
                         f"{exc.colno})") from None
    if not isinstance(entries, dict):
        raise ValueError(f"{source}: must be a JSON object of producer name -> settings")
    out = []
    for name, entry in entries.items():
        where = f"{source}.{name}"
        if not NAME.match(name):
            raise ValueError(f"{where}: a producer's name is 1-63 letters, digits, '.', '_' "
                             "or '-' (starting with a letter or digit)")
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a JSON object")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} "
                             f"(known: {', '.join(FIELDS)})")
        quota = None
        if "quota" in entry:
            try:
                quota = RateSpec.parse(str(entry["quota"]))
            except ValueError as exc:
                raise ValueError(f"{where}.quota: {exc}") from None
        out.append(ProducerSpec(
            name=name, weight=_positive(entry, "weight", where, 1.0, allow_zero=False),
            quota=quota,
            credit_budget=_positive(entry, "credit_budget", where, None, allow_zero=True)))
    return tuple(out)


def _positive(entry: Mapping[str, Any], field: str, where: str, default: Any,
              allow_zero: bool) -> Any:
    if field not in entry:
        return default
    value = entry[field]
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = "at least 0" if allow_zero else "greater than 0"
        raise ValueError(f"{where}.{field}: must be a number {bound}, got {json.dumps(value)}")
    return float(value)
