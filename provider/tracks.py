"""Tracks as callers see them, parsed from record-info answers and callbacks alike.

The providers describe a track in two spellings: camelCase in record-info's ``sunoData``
(``audioUrl``, ``modelName``, ...) and snake_case in callbacks (``audio_url``, ``model_name``,
sunoapi.org's ``source_audio_url``, ..., but ``createTime`` there too). Every field a provider
sends is kept, under one snake_case name; a few known ones get a fixed name:

- ``created_at``: the provider's ``createTime`` as sent ("YYYY-MM-DD HH:MM:SS", or epoch ms);
- ``duration``: seconds, a number (a numeric string is converted);
- ``expires_at``: added by backbeat, ISO 8601 UTC: when the provider deletes the files, from the
  profile's ``track_retention_days``, counted from the track's creation (``createTime`` read as
  UTC) or from when backbeat first saw it, whichever is earlier (the providers do not say which
  time zone ``createTime`` is in, so the earlier time errs on the safe side).

``merge`` joins what two answers said about the same tracks (by ``id``): a callback brings the
``source_*`` URLs a poll does not, and neither overwrites the other's fields with nothing.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

#: caller-facing name -> the provider spellings it is read from (first present wins)
KNOWN: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "audio_url": ("audio_url", "audioUrl"),
    "source_audio_url": ("source_audio_url", "sourceAudioUrl"),
    "stream_audio_url": ("stream_audio_url", "streamAudioUrl"),
    "source_stream_audio_url": ("source_stream_audio_url", "sourceStreamAudioUrl"),
    "image_url": ("image_url", "imageUrl"),
    "source_image_url": ("source_image_url", "sourceImageUrl"),
    "prompt": ("prompt",),
    "model_name": ("model_name", "modelName"),
    "title": ("title",),
    "tags": ("tags",),
    "duration": ("duration",),
    "created_at": ("createTime", "create_time", "createdAt", "created_at"),
}
_SOURCES = {source for names in KNOWN.values() for source in names}
#: backbeat's own key on each track
EXPIRES = "expires_at"
#: most fields kept per track, and longest key, against a runaway provider body
MAX_FIELDS = 64
MAX_KEY = 64
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    """``sourceAudioUrl`` -> ``source_audio_url`` (snake_case names are left alone)."""
    return _CAMEL.sub("_", name).lower()


def parse(items: Any, retention_days: float | None = None,
          now_ms: int | None = None) -> list[dict[str, Any]]:
    """Normalise provider track items (either spelling; a single object counts as a list of
    one) to caller-facing dicts, each with ``expires_at``. Items that are not objects, and
    fields with no value (null or ""), are dropped."""
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        if items is not None:
            log.warning("track list ignored: %s instead of a list", type(items).__name__)
        return []
    days = default_retention_days() if retention_days is None else retention_days
    seen_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = []
    for item in items:
        if not isinstance(item, dict):
            log.warning("track item ignored: %s instead of an object", type(item).__name__)
            continue
        track = _known(item)
        for key, value in item.items():
            if (key in _SOURCES or not isinstance(key, str) or value in (None, "")
                    or len(track) >= MAX_FIELDS or len(key) > MAX_KEY):
                continue
            track.setdefault(snake(key), value)
        if track:
            track[EXPIRES] = expires_at(track.get("created_at"), seen_ms, days)
            out.append(track)
    return out


def _known(item: dict[str, Any]) -> dict[str, Any]:
    track: dict[str, Any] = {}
    for name, sources in KNOWN.items():
        value = next((item[s] for s in sources if item.get(s) not in (None, "")), None)
        if value is None:
            continue
        if name == "duration":
            try:
                value = float(value)
            except (TypeError, ValueError):
                log.warning("track duration ignored: %r", value)
                continue
        elif name == "id":
            value = str(value)
        track[name] = value
    return track


def expires_at(created: Any, seen_ms: int, retention_days: float) -> str:
    """When the provider deletes a track's files (ISO 8601 UTC, ms precision)."""
    created_ms = created_epoch_ms(created)
    base_ms = seen_ms if created_ms is None else min(created_ms, seen_ms)
    when = datetime.fromtimestamp(base_ms / 1000, tz=UTC) + timedelta(days=retention_days)
    return when.isoformat(timespec="milliseconds")


def created_epoch_ms(created: Any) -> int | None:
    """``createTime`` in ms since the epoch: "YYYY-MM-DD HH:MM:SS" (read as UTC), ISO 8601, or
    epoch seconds / ms; None when unreadable."""
    if isinstance(created, bool) or created in (None, ""):
        return None
    if isinstance(created, int | float) or (isinstance(created, str)
                                            and created.strip().isdigit()):
        number = float(created)
        return int(number if number > 1e11 else number * 1000)
    if not isinstance(created, str):
        return None
    try:
        parsed = datetime.fromisoformat(created.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]],
          add_new: bool = True) -> list[dict[str, Any]]:
    """``old`` tracks completed with what ``new`` says of them (matched by ``id``): fields
    ``old`` lacks are added, the earlier ``expires_at`` is kept. Tracks only ``new`` has are
    appended unless ``add_new`` is False. Tracks without an id are matched by position."""
    merged = [dict(t) for t in old]
    by_id = {t["id"]: t for t in merged if t.get("id")}
    for index, track in enumerate(new):
        target = by_id.get(track.get("id")) if track.get("id") else (
            merged[index] if index < len(merged) and not merged[index].get("id") else None)
        if target is None:
            if add_new:
                merged.append(dict(track))
            continue
        for key, value in track.items():
            if key == EXPIRES and target.get(EXPIRES):
                target[EXPIRES] = min(target[EXPIRES], value)
            else:
                target.setdefault(key, value)
    return merged


def default_retention_days() -> float:
    """The configured provider's ``track_retention_days`` (BACKBEAT_PROVIDER)."""
    from ..config.settings import get_settings

    return get_settings().provider.track_retention_days
