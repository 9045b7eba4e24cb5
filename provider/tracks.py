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

``FIELDS`` is the one definition of a track's known fields: the provider spellings each is read
from here, and the type and description the API documents (workers/job.py builds its
``TrackOut`` schema from it).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackField:
    """One known track field: where it comes from, what it holds."""

    #: the provider spellings it is read from (first present wins); none: backbeat's own
    sources: tuple[str, ...]
    #: the value's type (``str`` or ``float``)
    type: type
    doc: str
    #: whether a value read is converted to ``type`` (else kept as the provider sent it)
    convert: bool = False


#: backbeat's own key on each track
EXPIRES = "expires_at"
#: caller-facing name -> the known field (values are never null: empty ones are dropped)
FIELDS: dict[str, TrackField] = {
    "id": TrackField(("id",), str, "The provider's track id.", convert=True),
    "audio_url": TrackField(("audio_url", "audioUrl"), str, "The generated audio (MP3)."),
    "source_audio_url": TrackField(("source_audio_url", "sourceAudioUrl"), str,
                                   "The audio at its origin (sunoapi.org callbacks)."),
    "stream_audio_url": TrackField(("stream_audio_url", "streamAudioUrl"), str,
                                   "The audio as a stream, available before the file."),
    "source_stream_audio_url": TrackField(("source_stream_audio_url", "sourceStreamAudioUrl"),
                                          str, "The stream at its origin (sunoapi.org callbacks)."),
    "image_url": TrackField(("image_url", "imageUrl"), str, "The cover image."),
    "source_image_url": TrackField(("source_image_url", "sourceImageUrl"), str,
                                   "The cover image at its origin (sunoapi.org callbacks)."),
    "prompt": TrackField(("prompt",), str, "The lyrics or prompt the track was made from."),
    "model_name": TrackField(("model_name", "modelName"), str, "The model that made it."),
    "title": TrackField(("title",), str, "The track's title."),
    "tags": TrackField(("tags",), str, "The track's style tags."),
    "duration": TrackField(("duration",), float, "Length in seconds.", convert=True),
    "created_at": TrackField(("createTime", "create_time", "createdAt", "created_at"), str,
                             "The provider's createTime as sent (\"YYYY-MM-DD HH:MM:SS\", or "
                             "epoch ms)."),
    EXPIRES: TrackField((), str, "When the provider deletes the track's files (ISO 8601 UTC): "
                        "its retention, counted from the track's creation or from when "
                        "backbeat first saw it, whichever is earlier."),
}
_SOURCES = {source for known in FIELDS.values() for source in known.sources}
#: most fields kept per track, and longest key, against a runaway provider body
MAX_FIELDS = 64
MAX_KEY = 64
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    """``sourceAudioUrl`` -> ``source_audio_url`` (snake_case names are left alone)."""
    return _CAMEL.sub("_", name).lower()


def parse(items: Any, retention_days: float,
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
            track[EXPIRES] = expires_at(track.get("created_at"), seen_ms, retention_days)
            out.append(track)
    return out


def _known(item: dict[str, Any]) -> dict[str, Any]:
    track: dict[str, Any] = {}
    for name, known in FIELDS.items():
        value = next((item[s] for s in known.sources if item.get(s) not in (None, "")), None)
        if value is None:
            continue
        if known.convert:
            try:
                value = known.type(value)
            except (TypeError, ValueError):
                log.warning("track %s ignored: %r", name, value)
                continue
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
