"""Reading the JSON settings (``BACKBEAT_ACCOUNTS``, ``BACKBEAT_PRODUCERS``): every error names
the variable and the entry's field, and never quotes a value that may be a secret."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: what an account's or a producer's name may be: it is written on jobs, in Redis keys, logs
#: and metric labels
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
NAME_RULE = "1-63 letters, digits, '.', '_' or '-' (starting with a letter or digit)"


def load(text: str, source: str) -> Any:
    """The JSON value of ``text``; ValueError naming ``source`` (the message quotes no part
    of the text)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno} column "
                         f"{exc.colno})") from None


def check_object(entry: Any, where: str, known: Iterable[str]) -> Mapping[str, Any]:
    """``entry`` when it is a JSON object of ``known`` fields only; else ValueError."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a JSON object")
    known = tuple(known)
    unknown = sorted(set(entry) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} "
                         f"(known: {', '.join(known)})")
    return entry


def number(entry: Mapping[str, Any], field: str, where: str, default: Any, *,
           integer: bool = False, minimum: float = 0, above: bool = False) -> Any:
    """``entry[field]`` as a finite number of at least ``minimum`` (greater with ``above``;
    an integer with ``integer``), or ``default`` when absent; else ValueError."""
    if field not in entry:
        return default
    value = entry[field]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if integer:
        ok = ok and float(value).is_integer()
    ok = ok and (value > minimum if above else value >= minimum)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"greater than {minimum:g}" if above else f"of at least {minimum:g}"
        raise ValueError(f"{where}.{field}: must be {kind} {bound}, got {json.dumps(value)}")
    return int(value) if integer else float(value)
