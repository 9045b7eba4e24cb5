"""Callbacks: signed job URLs always; kie's X-Webhook-Signature too when a key is configured."""

import base64
import hashlib
import hmac
import time

import pytest

from backbeat.api.web import create_app
from backbeat.config.settings import Settings
from backbeat.workers import jobs
from backbeat.workers.runtime import Runtime
from backbeat.workers.signing import sign
from backbeat.workers.states import JobState


@pytest.fixture
def kie_app(redis):
    settings = Settings.from_env({**__import__("os").environ, "BACKBEAT_PROVIDER": "kie",
                                  "BACKBEAT_PROVIDER_WEBHOOK_KEY": "kie-hmac-key"})
    rt = Runtime(settings)
    rt.store.create("j1", "add-vocals", {})
    rt.store.transition("j1", JobState.SUBMITTING, "go")
    rt.store.transition("j1", JobState.SUBMITTED, "ok", fields={"upstream_task_id": "T1"})
    return create_app(settings).test_client(), rt


def body(kind="text"):
    return {"code": 200, "msg": "ok", "data": {"callbackType": kind, "task_id": "T1",
                                               "data": []}}


def kie_headers(key="kie-hmac-key", task_id="T1", stamp=None):
    stamp = str(int(time.time()) if stamp is None else stamp)
    mac = hmac.new(key.encode(), f"{task_id}.{stamp}".encode(), hashlib.sha256).digest()
    return {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": base64.b64encode(mac).decode()}


def test_kie_signature_is_required_when_configured(kie_app):
    client, rt = kie_app
    url = f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}"
    assert client.post(url, json=body()).status_code == 401
    assert client.post(url, json=body(), headers=kie_headers(key="wrong")).status_code == 401
    old = kie_headers(stamp=int(time.time()) - 3600)
    assert client.post(url, json=body(), headers=old).status_code == 401
    assert rt.store.get("j1").state is JobState.SUBMITTED
    ok = client.post(url, json=body(), headers=kie_headers())
    assert ok.status_code == 200 and ok.json["state"] == "text_ready"


def test_callbacks_are_idempotent_and_monotonic(kie_app):
    client, rt = kie_app
    url = f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}"
    track = [{"id": "a", "audio_url": "https://cdn.example.com/a.mp3", "duration": 10.5}]
    complete = {"code": 200, "msg": "done", "data": {"callbackType": "complete",
                                                     "task_id": "T1", "data": track}}
    assert client.post(url, json=complete, headers=kie_headers()).json["state"] == "succeeded"
    for late in (body("text"), body("first"), complete):
        resp = client.post(url, json=late, headers=kie_headers())
        assert resp.status_code == 200 and resp.json["msg"] == "no change"
    job = rt.store.get("j1")
    assert job.state is JobState.SUCCEEDED and job.tracks[0]["audio_url"].endswith("a.mp3")


@pytest.mark.parametrize("bad", [
    {"code": 200},
    {"code": 200, "data": {"callbackType": "nope", "task_id": "T1"}},
    {"code": "200", "data": {"callbackType": "text", "task_id": "T1"}},
    ["not", "an", "object"],
])
def test_malformed_callbacks_get_field_errors(kie_app, bad):
    client, rt = kie_app
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", json=bad,
                       headers=kie_headers())
    assert resp.status_code in (401, 422) and resp.json["code"] in (401, 422)


def test_a_late_callback_of_a_retried_jobs_earlier_task_is_ignored(kie_app):
    """Given a job that failed on task T1 and was retried, expect T1's late callbacks to change
    nothing, whether the new round is still queued or already submitting (where a callback of
    an unknown task would otherwise be adopted as this round's)."""
    client, rt = kie_app
    url = f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}"
    error = {"code": 501, "msg": "generation failed",
             "data": {"callbackType": "error", "task_id": "T1", "data": []}}
    assert client.post(url, json=error, headers=kie_headers()).json["state"] == "failed"
    jobs.retry(rt, "j1")
    for state in (JobState.QUEUED, JobState.SUBMITTING):
        if state is JobState.SUBMITTING:
            rt.store.transition("j1", JobState.SUBMITTING, "round two")
        for late in (body("text"), error):
            resp = client.post(url, json=late, headers=kie_headers())
            assert resp.status_code == 200 and resp.json["msg"] == "no change"
        job = rt.store.get("j1")
        assert job.state is state and not job.upstream_task_id and job.get("adopted") != "1"
    assert rt.store.get("j1").get("previous_task_ids") == "T1"
