"""Tracks: every field the providers send, in either spelling, with an expiry from the
profile's retention; merged across polls and callbacks; shown by the job and the client."""

import json
import os

import pytest

from backbeat.api.client import Client
from backbeat.api.web import create_app
from backbeat.config.settings import Settings
from backbeat.provider import answers as upstream
from backbeat.provider import tracks
from backbeat.provider.profiles import PROFILES
from backbeat.workers.runtime import Runtime
from backbeat.workers.signing import sign
from backbeat.workers.states import STAGE_STATE, JobState

#: record-info's ``data`` as the docs show it (camelCase items)
RECORD = {
    "taskId": "T1", "parentMusicId": "", "param": "{}", "status": "SUCCESS",
    "type": "GENERATE", "operationType": "add_vocals", "errorCode": None, "errorMessage": None,
    "response": {"taskId": "T1", "sunoData": [{
        "id": "e231", "audioUrl": "https://cdn.example.com/e231.mp3",
        "streamAudioUrl": "https://cdn.example.com/s/e231", "imageUrl": "https://cdn.example.com/e231.jpeg",
        "prompt": "[Verse] neon hum", "modelName": "chirp-v4-5", "title": "City lights",
        "tags": "jazz, warm", "createTime": "2025-01-01 00:00:00", "duration": 198.44}]},
}
#: a sunoapi.org ``complete`` callback item (snake_case, source_* URLs, createTime camelCase)
CALLBACK_ITEM = {
    "id": "e231", "audio_url": "https://cdn.example.com/e231.mp3",
    "source_audio_url": "https://src.example.com/e231.mp3",
    "stream_audio_url": "https://cdn.example.com/s/e231",
    "source_stream_audio_url": "https://src.example.com/s/e231",
    "image_url": "https://cdn.example.com/e231.jpeg",
    "source_image_url": "https://src.example.com/e231.jpeg",
    "prompt": "[Verse] neon hum", "model_name": "chirp-v4-5", "title": "City lights",
    "tags": "jazz, warm", "createTime": "2025-01-01 00:00:00", "duration": 198.44,
}
SEEN_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: after createTime
EXPECTED = {
    "id": "e231", "audio_url": "https://cdn.example.com/e231.mp3",
    "stream_audio_url": "https://cdn.example.com/s/e231",
    "image_url": "https://cdn.example.com/e231.jpeg", "prompt": "[Verse] neon hum",
    "model_name": "chirp-v4-5", "title": "City lights", "tags": "jazz, warm",
    "created_at": "2025-01-01 00:00:00", "duration": 198.44,
    "expires_at": "2025-01-15T00:00:00.000+00:00",
}
SOURCES = {"source_audio_url": "https://src.example.com/e231.mp3",
           "source_stream_audio_url": "https://src.example.com/s/e231",
           "source_image_url": "https://src.example.com/e231.jpeg"}


def test_record_info_items_keep_every_field():
    assert tracks.parse(RECORD["response"]["sunoData"], 14, SEEN_MS) == [EXPECTED]
    update = upstream.from_record(RECORD, 14)
    assert STAGE_STATE[update.stage] is JobState.SUCCEEDED
    assert json.loads(update.fields["tracks"])[0]["audio_url"] == EXPECTED["audio_url"]


def test_callback_items_keep_every_field_including_sunoapi_sources():
    assert tracks.parse([CALLBACK_ITEM], 14, SEEN_MS) == [{**EXPECTED, **SOURCES}]


def test_unknown_fields_are_kept_in_snake_case_and_values_normalised():
    item = {"id": 7, "audioUrl": "https://a", "lyricsAligned": True, "vocal_gender": "f",
            "duration": "61.5", "createTime": 1_735_689_600_000, "imageUrl": None, "tags": ""}
    [track] = tracks.parse(item, 14, SEEN_MS)  # one object: a list of one
    assert track == {"id": "7", "audio_url": "https://a", "lyrics_aligned": True,
                     "vocal_gender": "f", "duration": 61.5, "created_at": 1_735_689_600_000,
                     "expires_at": "2025-01-15T00:00:00.000+00:00"}
    assert tracks.parse("x", 14) == [] and tracks.parse([1, None, {}], 14) == []


@pytest.mark.parametrize(("created", "days", "expected"), [
    ("2025-01-01 00:00:00", 14, "2025-01-15T00:00:00.000+00:00"),
    ("2025-01-01 00:00:00", 15, "2025-01-16T00:00:00.000+00:00"),
    ("2025-01-01T08:00:00+08:00", 14, "2025-01-15T00:00:00.000+00:00"),
    (1_735_689_600, 14, "2025-01-15T00:00:00.000+00:00"),  # epoch seconds
    ("not a time", 14, "2026-01-15T00:00:00.000+00:00"),  # from when backbeat saw it
    ("2027-01-01 00:00:00", 14, "2026-01-15T00:00:00.000+00:00"),  # never later than seen
])
def test_expires_at_counts_the_retention_from_the_earlier_of_creation_and_first_sight(
        created, days, expected):
    assert tracks.expires_at(created, SEEN_MS, days) == expected


def test_each_profile_carries_its_retention():
    assert {name: p.track_retention_days for name, p in PROFILES.items()} == {
        "kie": 14.0, "sunoapi": 14.0}


def test_merge_completes_tracks_without_dropping_or_overwriting():
    polled = tracks.parse(RECORD["response"]["sunoData"], 14, SEEN_MS)
    called = tracks.parse([{**CALLBACK_ITEM, "title": "other"}, {"id": "b2"}], 15, SEEN_MS)
    merged = tracks.merge(polled, called)
    assert merged[0] == {**EXPECTED, **SOURCES}  # title kept, expiry the earlier one
    assert [t["id"] for t in merged] == ["e231", "b2"]
    assert tracks.merge(polled, called, add_new=False) == [{**EXPECTED, **SOURCES}]


@pytest.fixture
def app(redis):
    settings = Settings.from_env({**os.environ, "BACKBEAT_PROVIDER": "sunoapi",
                                  "BACKBEAT_PROVIDER_WEBHOOK_KEY": ""})
    rt = Runtime(settings)
    rt.store.create("j1", "add-vocals", {})
    rt.store.transition("j1", JobState.SUBMITTING, "go")
    rt.store.transition("j1", JobState.SUBMITTED, "ok", fields={"upstream_task_id": "T1"})
    return create_app(settings).test_client(), rt, settings


def complete(items):
    return {"code": 200, "msg": "All generated successfully.",
            "data": {"callbackType": "complete", "task_id": "T1", "data": items}}


def test_a_callback_after_the_poll_settled_the_job_adds_its_fields(app):
    """Given a job succeeded by a poll (camelCase, no source_* URLs), expect the late
    ``complete`` callback to add what only it carries, though it moves nothing."""
    client, rt, settings = app
    update = upstream.from_record(RECORD, 14)
    assert rt.store.transition("j1", STAGE_STATE[update.stage], update.reason,
                               fields=update.fields).applied
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}",
                       json=complete([CALLBACK_ITEM]))
    assert resp.status_code == 200 and resp.json["msg"] == "no change"
    [track] = rt.store.get("j1").to_public()["tracks"]
    assert track.items() >= {**EXPECTED, **SOURCES}.items() - {("expires_at",
                                                               EXPECTED["expires_at"])}
    assert track["expires_at"] == "2025-01-15T00:00:00.000+00:00"
    assert Client(settings).get("j1")["tracks"] == [track]  # the Python client carries them


def test_stage_callbacks_accumulate_tracks_and_fields(app):
    client, rt, _ = app
    url = f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}"
    first = {"code": 200, "data": {"callbackType": "first", "task_id": "T1",
                                   "data": [CALLBACK_ITEM]}}
    assert client.post(url, json=first).json["state"] == "first_ready"
    second = {"id": "b2", "audio_url": "https://cdn.example.com/b2.mp3", "duration": 61.0}
    assert client.post(url, json=complete([{"id": "e231"}, second])).json["state"] == "succeeded"
    got = rt.store.get("j1").to_public()["tracks"]
    assert [t["id"] for t in got] == ["e231", "b2"]
    assert got[0].items() >= SOURCES.items() and got[0]["prompt"] == "[Verse] neon hum"
    assert "expires_at" in got[1]


def test_get_job_shows_every_track_field(app):
    client, rt, _ = app
    client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", json=complete([CALLBACK_ITEM]))
    resp = client.get("/v1/jobs/j1", headers={"Authorization": "Bearer producer-token-1"})
    assert resp.status_code == 200
    assert resp.json["tracks"][0].items() >= {**SOURCES, "prompt": "[Verse] neon hum",
                                              "expires_at": EXPECTED["expires_at"]}.items()


def test_the_openapi_document_describes_every_known_track_field(app):
    """Given provider/tracks.py FIELDS, expect /openapi.json's TrackOut to declare each field
    with its type and description (the schema is built from the table)."""
    client, _, _ = app
    spec = client.get("/openapi.json").json["components"]["schemas"]["TrackOut"]["properties"]
    assert list(spec) == list(tracks.FIELDS)
    for name, known in tracks.FIELDS.items():
        kind = "number" if known.type is float else "string"
        assert spec[name] == {"type": kind, "description": known.doc}
