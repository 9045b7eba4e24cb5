"""Simulated tasks: a timeline fixed at acceptance, record-info data and callback bodies."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..provider.profiles import get_profile
from .config import SimConfig
from .validation import default_model, first_word

PENDING, TEXT_SUCCESS, FIRST_SUCCESS, SUCCESS = (
    "PENDING",
    "TEXT_SUCCESS",
    "FIRST_SUCCESS",
    "SUCCESS",
)
AUDIO_FAILED = "GENERATE_AUDIO_FAILED"
SENSITIVE = "SENSITIVE_WORD_ERROR"
CREATE_FAILED = "CREATE_TASK_FAILED"
CALLBACK_EXCEPTION = "CALLBACK_EXCEPTION"
FAILED = frozenset({AUDIO_FAILED, SENSITIVE, CREATE_FAILED})

#: callback msg per stage (https://docs.kie.ai/suno-api/add-vocals-callbacks)
STAGE_MSG = {
    "text": "Text generation completed successfully.",
    "first": "First track generated successfully.",
    "complete": "All generated successfully.",
}
#: (errorCode, errorMessage) of a failed generation, per profile
AUDIO_FAILURE = {
    "kie": (501, "Audio generation failed"),
    "sunoapi": (400, "Instrumental generation failed"),
}
SENSITIVE_FAILURE = (400, "Your input contains sensitive words")
#: (callback code, message) of a task that could not be created (record-info errorCode null)
CREATE_FAILURE = (500, "Task creation failed")
_MODEL_NAMES = {"V4_5PLUS": "chirp-v4-5-plus", "V5": "chirp-v5", "V5_5": "chirp-v5-5"}
#: hosts under the reserved .invalid TLD: the URLs look real and never resolve
_CDN = "https://cdn.sim.invalid"


@dataclass
class Task:
    """One accepted task; stage offsets are seconds after ``accepted_t`` (monotonic)."""

    task_id: str
    endpoint: str
    profile: str
    request: dict[str, Any]
    accepted_t: float
    accepted_wall: float
    text_at: float
    first_at: float
    complete_at: float
    #: status reached at the end: SUCCESS, GENERATE_AUDIO_FAILED or SENSITIVE_WORD_ERROR
    final: str
    #: text and first stages skipped: PENDING straight to the final status
    complete_only: bool
    track_ids: list[str]
    durations: list[float]
    #: delivery records, appended by the callback sender under the ledger lock
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    #: the failure code of a failing task (``fail_code``), None: the usual one
    fail_code: int | None = None

    @property
    def failed_at(self) -> float:
        """Offset at which a failing task shows its failure status."""
        return self.text_at if self.final in (SENSITIVE, CREATE_FAILED) else self.complete_at

    @property
    def error(self) -> tuple[int | None, str] | None:
        """(errorCode, errorMessage) of record-info for a failing task, else None."""
        if self.final == SENSITIVE:
            return SENSITIVE_FAILURE
        if self.final == CREATE_FAILED:
            return self.fail_code, self._message(self.fail_code, CREATE_FAILURE[1])
        if self.final == AUDIO_FAILED:
            code, msg = AUDIO_FAILURE[self.profile]
            if self.fail_code is None:
                return code, msg
            return self.fail_code, self._message(self.fail_code, msg)
        return None

    @property
    def callback_error(self) -> tuple[int, str]:
        """(code, msg) of the task's error callback."""
        if self.final == CREATE_FAILED and self.fail_code is None:
            return CREATE_FAILURE
        code, msg = self.error or AUDIO_FAILURE[self.profile]
        return (code if code is not None else CREATE_FAILURE[0]), msg

    @property
    def refunded(self) -> bool:
        """kie's callback 531: the generation failed and its credits were given back."""
        return self.final in FAILED and self.fail_code == 531

    def _message(self, code: int | None, default: str) -> str:
        return get_profile(self.profile).callback_codes.get(code, default) if code else default


def plan_task(
    task_id: str,
    endpoint: str,
    request: dict[str, Any],
    cfg: SimConfig,
    rng: random.Random,
    now: float,
) -> Task:
    """Decide the whole life of a task at acceptance (call under the ledger lock: uses rng)."""
    fails = rng.random() < cfg.fail_rate
    complete_only = rng.random() < cfg.complete_only_rate
    track_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(cfg.tracks)]
    durations = [round(rng.uniform(60.0, 240.0), 2) for _ in range(cfg.tracks)]
    final = SENSITIVE if first_word(request, cfg.sensitive_words) else SUCCESS
    if final == SUCCESS and fails:
        final = cfg.fail_status
    return Task(
        task_id=task_id,
        endpoint=endpoint,
        profile=cfg.profile,
        request=request,
        accepted_t=now,
        accepted_wall=time.time(),
        text_at=cfg.text_after_s,
        first_at=cfg.first_after_s,
        complete_at=cfg.complete_after_s,
        final=final,
        complete_only=complete_only,
        track_ids=track_ids,
        durations=durations,
        fail_code=cfg.fail_code,
    )


def status_at(task: Task, now: float) -> str:
    """The task's status at monotonic time ``now``; never goes backwards."""
    elapsed = now - task.accepted_t
    if task.final in FAILED and elapsed >= task.failed_at:
        return task.final
    if elapsed >= task.complete_at:
        return CALLBACK_EXCEPTION if task.final == CALLBACK_EXCEPTION else SUCCESS
    if task.complete_only or task.final in (SENSITIVE, CREATE_FAILED):
        return PENDING
    if elapsed >= task.first_at:
        return FIRST_SUCCESS
    if elapsed >= task.text_at:
        return TEXT_SUCCESS
    return PENDING


def _visible_tracks(status: str, task: Task) -> int:
    """How many tracks a status shows."""
    return {FIRST_SUCCESS: 1, SUCCESS: len(task.track_ids),
            CALLBACK_EXCEPTION: len(task.track_ids)}.get(status, 0)


def _track(task: Task, i: int) -> dict[str, Any]:
    """Track ``i`` with neutral keys; the callers rename to camelCase or snake_case."""
    track_id = task.track_ids[i]
    ready = task.complete_at if (i > 0 or task.complete_only) else task.first_at
    req = task.request
    return {
        "id": track_id,
        "audio": f"{_CDN}/audio/{track_id}.mp3",
        "stream": f"{_CDN}/stream/{track_id}",
        "image": f"{_CDN}/image/{track_id}.jpeg",
        "prompt": req.get("prompt", ""),
        "model": _MODEL_NAMES[req.get("model") or default_model(task.profile)],
        "title": req["title"],
        "tags": req["tags"] if task.endpoint == "add-instrumental" else req["style"],
        "createTime": _fmt_wall(task.accepted_wall + ready),
        "duration": task.durations[i],
    }


def _fmt_wall(ts: float) -> str:
    """UTC wall time as "YYYY-MM-DD HH:MM:SS"."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _camel(t: dict[str, Any]) -> dict[str, Any]:
    """A record-info sunoData item."""
    return {
        "id": t["id"],
        "audioUrl": t["audio"],
        "streamAudioUrl": t["stream"],
        "imageUrl": t["image"],
        "prompt": t["prompt"],
        "modelName": t["model"],
        "title": t["title"],
        "tags": t["tags"],
        "createTime": t["createTime"],
        "duration": t["duration"],
    }


def _snake(t: dict[str, Any], profile: str) -> dict[str, Any]:
    """A callback data item (sunoapi.org adds the source_* URLs)."""
    item = {
        "id": t["id"],
        "audio_url": t["audio"],
        "stream_audio_url": t["stream"],
        "image_url": t["image"],
        "prompt": t["prompt"],
        "model_name": t["model"],
        "title": t["title"],
        "tags": t["tags"],
        "createTime": t["createTime"],
        "duration": t["duration"],
    }
    if profile == "sunoapi":
        item["source_audio_url"] = t["audio"].replace("/audio/", "/source/audio/")
        item["source_stream_audio_url"] = t["stream"].replace("/stream/", "/source/stream/")
        item["source_image_url"] = t["image"].replace("/image/", "/source/image/")
    return item


def record_info_data(task: Task, now: float) -> dict[str, Any]:
    """The ``data`` of a record-info answer (its statuses: docs/PROVIDER-CODES.md)."""
    status = status_at(task, now)
    error = task.error if status in FAILED else None
    param = {k: v for k, v in task.request.items() if k != "callBackUrl"}
    param.setdefault("model", default_model(task.profile))
    items = [_camel(_track(task, i)) for i in range(_visible_tracks(status, task))]
    return {
        "taskId": task.task_id,
        "parentMusicId": "",
        "param": json.dumps(param, ensure_ascii=False),
        "response": {"taskId": task.task_id, "sunoData": items},
        "status": status,
        "type": "GENERATE",
        "operationType": task.endpoint.replace("-", "_"),
        "errorCode": error[0] if error else None,
        "errorMessage": error[1] if error else None,
    }


def callback_plan(task: Task) -> list[tuple[float, str]]:
    """(offset seconds, callbackType) of every stage callback the task sends."""
    if task.final in (SENSITIVE, CREATE_FAILED):
        return [(task.text_at, "error")]
    # CALLBACK_EXCEPTION: the provider failed to deliver the final callback
    last = [] if task.final == CALLBACK_EXCEPTION else [
        (task.complete_at, "error" if task.final == AUDIO_FAILED else "complete")]
    if task.complete_only:
        return last
    return [(task.text_at, "text"), (task.first_at, "first"), *last]


def callback_body(task: Task, kind: str) -> dict[str, Any]:
    """The JSON body POSTed to callBackUrl for stage ``kind``."""
    if kind == "error":
        code, msg = task.callback_error
        data = {"callbackType": "error", "task_id": task.task_id, "data": None}
        return {"code": code, "msg": msg, "data": data}
    count = {"text": 0, "first": 1}.get(kind, len(task.track_ids))
    items = [_snake(_track(task, i), task.profile) for i in range(count)]
    data = {"callbackType": kind, "task_id": task.task_id, "data": items}
    return {"code": 200, "msg": STAGE_MSG[kind], "data": data}


def task_info(task: Task, now: float) -> dict[str, Any]:
    """Admin view of one task: status, planned stage times and callback deliveries."""
    return {
        "taskId": task.task_id,
        "endpoint": task.endpoint,
        "title": task.request.get("title"),
        "status": status_at(task, now),
        "final": task.final,
        "complete_only": task.complete_only,
        "accepted_t": task.accepted_t,
        "accepted_wall": task.accepted_wall,
        "age_s": round(now - task.accepted_t, 6),
        "stages_s": {kind: offset for offset, kind in callback_plan(task)},
        "callbacks": list(task.callbacks),
    }
