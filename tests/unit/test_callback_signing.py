"""Callbacks: signed job URLs always; kie's X-Webhook-Signature too when a key is configured."""

import base64
import hashlib
import hmac
import os
import time

import pytest

from backbeat.api.web import create_app
from backbeat.config.settings import Settings
from backbeat.workers import jobs
from backbeat.workers.runtime import Runtime
from backbeat.workers.signing import sign
from backbeat.workers.states import JobState


def app_with_job(provider: str, webhook_key: str):
    """The web app's test client for ``provider`` and job j1, submitted as upstream task T1."""
    settings = Settings.from_env({**os.environ, "BACKBEAT_PROVIDER": provider,
                                  "BACKBEAT_PROVIDER_WEBHOOK_KEY": webhook_key})
    rt = Runtime(settings)
    rt.store.create("j1", "add-vocals", {})
    rt.store.transition("j1", JobState.SUBMITTING, "go")
    rt.store.transition("j1", JobState.SUBMITTED, "ok", fields={"upstream_task_id": "T1"})
    return create_app(settings).test_client(), rt


@pytest.fixture
def kie_app(redis):
    """kie with ``webhookHmacKey``: callbacks need the signed URL and X-Webhook-Signature."""
    return app_with_job("kie", "kie-hmac-key")


@pytest.fixture
def url_signed_app(redis):
    """sunoapi (no provider signature): the signed URL alone authorises a callback."""
    return app_with_job("sunoapi", "")


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


#: malformed callback bodies and the field each one's 422 names (path into errors.json)
MALFORMED = [
    ({"code": 200}, ("data",)),
    ({"data": {"callbackType": "text", "task_id": "T1"}}, ("code",)),
    ({"code": "200", "data": {"callbackType": "text", "task_id": "T1"}}, ("code",)),
    ({"code": 200, "data": {"callbackType": "nope", "task_id": "T1"}}, ("data", "callbackType")),
    ({"code": 200, "data": {"callbackType": "text", "task_id": "T1", "data": "x"}},
     ("data", "data")),
    (["not", "an", "object"], ("code",)),
]


def errors_at(resp, path):
    errors = resp.json["errors"]["json"]
    for name in path:
        errors = errors[name]
    return errors


@pytest.mark.parametrize(("bad", "path"), MALFORMED)
def test_malformed_callbacks_get_field_errors(url_signed_app, bad, path):
    """Given a correctly signed URL, expect a malformed body refused by validation: 422 naming
    the field, and the job unchanged."""
    client, rt = url_signed_app
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", json=bad)
    assert resp.status_code == 422 and resp.json["code"] == 422, resp.json
    assert errors_at(resp, path), resp.json
    assert rt.store.get("j1").state is JobState.SUBMITTED


@pytest.mark.parametrize(("bad", "path"), [(b, p) for b, p in MALFORMED
                                           if isinstance(b, dict) and "data" in b])
def test_malformed_kie_signed_callbacks_reach_validation(kie_app, bad, path):
    """Given a body naming its task (so X-Webhook-Signature can be checked) and a valid
    signature, expect validation to refuse it: 422 naming the field."""
    client, rt = kie_app
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", json=bad,
                       headers=kie_headers())
    assert resp.status_code == 422 and resp.json["code"] == 422, resp.json
    assert errors_at(resp, path), resp.json


@pytest.mark.parametrize("bad", [{"code": 200}, ["not", "an", "object"]])
def test_kie_callbacks_naming_no_task_cannot_be_verified(kie_app, bad):
    """Given a body naming no task, X-Webhook-Signature (HMAC of the task id) cannot be checked:
    expect 401 before any validation."""
    client, rt = kie_app
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", json=bad,
                       headers=kie_headers())
    assert resp.status_code == 401 and resp.json["code"] == 401
    assert rt.store.get("j1").state is JobState.SUBMITTED


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
