"""The two value types the settings are made of: a :class:`Secret` that never prints itself,
and a provider rule :class:`RateSpec` (``N/Ws``). ``config.settings`` re-exports both."""

from __future__ import annotations

import re
from dataclasses import dataclass


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
