"""Per-model text limits of the add-instrumental and add-vocals bodies, as data.

Lengths are in characters (Python ``len``). The add-* pages give almost no limits, so the rows
restate the generate pages of both providers, which name them per model. Where the providers
disagree the table keeps the stricter figure:

- ``title``: kie.ai says 80 for every model; sunoapi.org says 100 (V4_5 and later) on its
  reference page but 80 on its rendered add-* page. The table says 80 everywhere.
- ``prompt``: 3000 for V4, 5000 for V4_5 and later (both providers agree).
- ``style``: 200 for V4, 1000 for V4_5 and later (both providers agree).
- ``tags`` and ``negativeTags``: no provider documents a limit; 1000 is backbeat's own bound,
  the same as ``style``.

Warning: the model list drifts with Suno releases. A model missing here (allowed through
BACKBEAT_MODELS) gets the strictest figure of each column, see :func:`limits_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TextLimits:
    """Longest accepted value of each text field, in characters, for one model."""

    title: int
    prompt: int
    style: int
    tags: int
    negativeTags: int  #: the provider's field name, kept as is

    def of(self, field: str) -> int | None:
        """The limit of the provider field ``field``; None for a field without one."""
        return getattr(self, field, None) if field in TEXT_FIELDS else None


#: the provider text fields the table covers
TEXT_FIELDS = ("title", "prompt", "style", "tags", "negativeTags")

_V4 = TextLimits(title=80, prompt=3000, style=200, tags=1000, negativeTags=1000)
_V4_5_ON = TextLimits(title=80, prompt=5000, style=1000, tags=1000, negativeTags=1000)

#: model -> limits (title 80 everywhere: the stricter of the providers' 80 and 100)
MODEL_LIMITS: dict[str, TextLimits] = {
    "V4": _V4,
    "V4_5": _V4_5_ON,
    "V4_5PLUS": _V4_5_ON,
    "V4_5ALL": _V4_5_ON,
    "V5": _V4_5_ON,
    "V5_5": _V4_5_ON,
}

#: for a model the table does not know: the strictest figure of each column
STRICTEST = TextLimits(**{f.name: min(getattr(row, f.name) for row in MODEL_LIMITS.values())
                          for f in fields(TextLimits)})


def limits_for(model: str) -> TextLimits:
    """The limits of ``model`` (``STRICTEST`` for a model not in the table)."""
    return MODEL_LIMITS.get(model, STRICTEST)
