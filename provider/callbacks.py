"""Provider stage callbacks as sent: read leniently into what backbeat can use.

The shapes accepted are those the providers' docs show
(https://docs.kie.ai/suno-api/add-vocals-callbacks,
https://docs.sunoapi.org/suno-api/add-vocals-callbacks, and the add-instrumental pages alike):
``task_id`` or ``taskId`` (in ``data``, or at the top level); ``callbackType`` in any case, with
``failed``/``fail`` for ``error`` (api.box's spelling); ``code`` as a number or a numeric string,
or missing (then ``callbackType`` decides); ``data.data`` a list, one object, ``[]``, null or
missing; any extra field. A non-200 code is a failure, whatever the stage. What a callback
means for a job is in answers.py (``from_callback``); applying it, in workers/callbacks.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """What a callback reports (its ``callbackType``, canonical spelling)."""

    TEXT = "text"
    FIRST = "first"
    COMPLETE = "complete"
    ERROR = "error"


#: ``callbackType`` spellings (lower case) -> the stage they mean
CALLBACK_TYPES: dict[str, Stage] = {
    **{stage.value: stage for stage in Stage},
    "completed": Stage.COMPLETE,
    "failed": Stage.ERROR,
    "fail": Stage.ERROR,
    "failure": Stage.ERROR,
}
#: longest task id taken from a callback
MAX_TASK_ID = 200


@dataclass(frozen=True)
class Callback:
    """What backbeat can use of one callback body; ``kind`` None means nothing."""

    task_id: str | None
    kind: Stage | None
    code: int | None
    msg: str
    items: Any = None
    problems: tuple[str, ...] = field(default=())

    @property
    def usable(self) -> bool:
        return bool(self.task_id) and self.kind is not None


def read_callback(payload: Any) -> Callback:
    """Read a callback body in any of the providers' shapes; never raises."""
    if not isinstance(payload, dict):
        return Callback(None, None, None, "", problems=("body is not a JSON object",))
    problems = []
    data = payload.get("data")
    if not isinstance(data, dict):
        problems.append("no data object")
        data = {}
    task_id = None
    for source in (data.get("task_id"), data.get("taskId"), payload.get("task_id"),
                   payload.get("taskId")):
        if isinstance(source, str | int) and not isinstance(source, bool) and str(source).strip():
            task_id = str(source).strip()
            break
    if task_id is None:
        problems.append("no task id")
    elif len(task_id) > MAX_TASK_ID:
        problems.append("task id too long")
        task_id = None
    code = _code(payload.get("code"))
    if code is None and payload.get("code") is not None:
        problems.append(f"code {payload.get('code')!r} unreadable")
    raw_kind = data.get("callbackType", data.get("callback_type", payload.get("callbackType")))
    kind = CALLBACK_TYPES.get(str(raw_kind).strip().lower()) if raw_kind is not None else None
    if kind is None:
        if code not in (None, 200):  # a failure code says enough on its own
            kind = Stage.ERROR
        else:
            problems.append(f"callbackType {raw_kind!r} unknown")
    msg = payload.get("msg", payload.get("message"))
    return Callback(task_id, kind, code, "" if msg is None else str(msg)[:500],
                    data.get("data"), tuple(problems))


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
