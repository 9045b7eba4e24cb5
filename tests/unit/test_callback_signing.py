"""Callbacks: signed job URLs always; kie's X-Webhook-Signature too when a key is configured."""

import base64
import hashlib
import hmac
import json
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


#: unusable bodies: a correctly signed one is answered 200 ("ignored"), the job unchanged
UNUSABLE = [
    {"code": 200},
    {"code": 200, "data": None},
    {"code": 500, "msg": "server error", "data": None},  # a failure naming no task
    {"code": 200, "data": {"callbackType": "nope", "task_id": "T1"}},
    {"code": 200, "data": {"callbackType": "text", "task_id": {"id": "T1"}}},
    {"code": 200, "data": {"callbackType": "text", "task_id": "T" * 201}},
    ["not", "an", "object"],
    "just a string",
]


@pytest.mark.parametrize("bad", UNUSABLE)
def test_unusable_signed_callbacks_are_acknowledged_and_ignored(url_signed_app, bad):
    """Given a correctly signed URL and a body backbeat cannot use, expect 200 (so the provider
    stops retrying), the reason in ``msg``, and the job unchanged."""
    client, rt = url_signed_app
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", json=bad)
    assert resp.status_code == 200 and resp.json["msg"].startswith("ignored"), resp.json
    job = rt.store.get("j1")
    assert job.state is JobState.SUBMITTED and job.upstream_task_id == "T1"
    assert job.int("callbacks_ignored") == 1


def test_a_body_that_is_not_json_is_acknowledged_and_ignored(url_signed_app):
    client, rt = url_signed_app
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", data=b"{not json",
                       content_type="application/json")
    assert resp.status_code == 200 and resp.json["msg"].startswith("ignored")
    assert rt.store.get("j1").state is JobState.SUBMITTED


def test_a_signed_callback_for_a_job_gone_from_redis_is_acknowledged(url_signed_app):
    client, rt = url_signed_app
    resp = client.post(f"/v1/callbacks/gone?sig={sign(rt.secret, 'gone')}", json=body())
    assert resp.status_code == 200 and resp.json["msg"] == "no such job"


ITEM = {"id": "a1", "audio_url": "https://cdn.example.com/a1.mp3", "duration": 198.44,
        "createTime": "2025-01-01 00:00:00"}
#: the shapes the providers' docs show (and their drift), each with the state it leads to
#: from ``submitted`` and the error code it leaves (None: no error); failure codes neither
#: profile calls retryable, so the job fails rather than being resubmitted
VARIANTS = [
    ("taskId camelCase",
     {"code": 200, "msg": "ok", "data": {"callbackType": "text", "taskId": "T1", "data": []}},
     "text_ready", None),
    ("callbackType upper case",
     {"code": 200, "data": {"callbackType": "FIRST", "task_id": "T1", "data": [ITEM]}},
     "first_ready", None),
    ("code as a string",
     {"code": "200", "msg": "ok", "data": {"callbackType": "text", "task_id": "T1"}},
     "text_ready", None),
    ("code missing", {"data": {"callbackType": "text", "task_id": "T1", "data": []}},
     "text_ready", None),
    ("msg null, extra fields everywhere",
     {"code": 200, "msg": None, "traceId": "x", "data": {
         "callbackType": "complete", "task_id": "T1", "operationType": "add_vocals",
         "data": [{**ITEM, "lyricsAligned": True}]}},
     "succeeded", None),
    ("data.data one object", {"code": 200, "data": {
        "callbackType": "complete", "task_id": "T1", "data": ITEM}}, "succeeded", None),
    ("data.data null on a stage",
     {"code": 200, "data": {"callbackType": "first", "task_id": "T1", "data": None}},
     "first_ready", None),
    ("data.data unusable (tracks ignored, stage kept)",
     {"code": 200, "data": {"callbackType": "text", "task_id": "T1", "data": "x"}},
     "text_ready", None),
    ("task id at the top level",
     {"code": 200, "taskId": "T1", "data": {"callbackType": "text", "data": []}},
     "text_ready", None),
    ("sunoapi error, data null",
     {"code": 400, "msg": "Instrumental generation failed",
      "data": {"callbackType": "error", "task_id": "T1", "data": None}}, "failed", 400),
    ("kie error, data []",
     {"code": 400, "msg": "Lyrics contain copyrighted material",
      "data": {"callbackType": "error", "task_id": "T1", "data": []}}, "failed", 400),
    ("error, data.data missing, code as a string",
     {"code": "451", "msg": "download failed",
      "data": {"callbackType": "error", "task_id": "T1"}}, "failed", 451),
    ("api.box spelling 'failed'",
     {"code": 408, "msg": "timeout", "data": {"callbackType": "failed", "task_id": "T1"}},
     "failed", 408),
    ("unknown callbackType with a failure code",
     {"code": 413, "msg": "matches an existing work",
      "data": {"callbackType": "whatever", "task_id": "T1"}}, "failed", 413),
    ("error callbackType without a code",
     {"msg": "failed", "data": {"callbackType": "error", "task_id": "T1", "data": None}},
     "failed", "error"),
]


@pytest.mark.parametrize(("body_", "state", "code"), [v[1:] for v in VARIANTS],
                         ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("app", ["url_signed_app", "kie_app"])
def test_every_documented_callback_shape_is_applied(request, app, body_, state, code):
    """Given a correctly signed callback in one of the providers' shapes, expect 200 and the
    stage applied (a failure with its code), whichever provider signs it."""
    if app == "kie_app" and "task_id" not in body_["data"] and "taskId" not in body_["data"]:
        pytest.skip("kie signs data.task_id: a body without it cannot be verified (401)")
    client, rt = request.getfixturevalue(app)
    headers = kie_headers() if app == "kie_app" else {}
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}", json=body_,
                       headers=headers)
    assert resp.status_code == 200 and resp.json["msg"] == "applied", resp.json
    job = rt.store.get("j1").to_public()
    assert job["state"] == state and job["upstream_task_id"] == "T1"
    assert (job["error"] or {}).get("code") == code


def test_a_json_callback_sent_with_another_content_type_is_applied(url_signed_app):
    client, rt = url_signed_app
    resp = client.post(f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}",
                       data=json.dumps(body("text")), content_type="text/plain")
    assert resp.status_code == 200 and resp.json["state"] == "text_ready"


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
    error = {"code": 400, "msg": "generation failed",  # not retryable: the job fails
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


def requeued_after_uncertain(rt, job_id="j2"):
    """A job whose attempt went uncertain and was put back in queue by the grace (as
    reconcile.settle_uncertain does: queued, parked for the pump)."""
    rt.store.create(job_id, "add-vocals", {})
    rt.store.transition(job_id, JobState.SUBMITTING, "submit", fields={"attempt_id": "A1"})
    rt.store.annotate(job_id, {"uncertain": "1"}, require_state=JobState.SUBMITTING)
    moved = rt.store.transition(job_id, JobState.QUEUED, "uncertain: resubmitting",
                                require_from=JobState.SUBMITTING, require_attempt="A1",
                                fields={"+resubmits": 1})
    assert moved.applied
    rt.store.park(job_id)
    return f"/v1/callbacks/{job_id}?sig={sign(rt.secret, job_id)}"


def test_a_late_callback_of_a_requeued_attempt_is_adopted_and_not_resubmitted(url_signed_app):
    """Given a job put back in queue after its uncertain attempt, expect that attempt's late
    callback to adopt the task (recorded, so polling can find it), the parked resubmission
    dropped, and the resubmitted message to find the job taken, never calling again."""
    from backbeat.workers.submission import submit_job

    client, rt = url_signed_app
    url = requeued_after_uncertain(rt)
    text = {"code": 200, "msg": "ok", "data": {"callbackType": "text", "task_id": "T9"}}
    resp = client.post(url, json=text)
    assert resp.status_code == 200 and resp.json["msg"] == "applied", resp.json
    job = rt.store.get("j2")
    assert job.state is JobState.TEXT_READY and job.upstream_task_id == "T9"
    assert job.get("adopted") == "1" and job.get("adopted_late") == "1"
    assert rt.redis.zscore(rt.keys.parked, "j2") is None  # no resubmission pending
    assert rt.redis.zscore(rt.keys.poll, "j2") is not None  # polled: a lost `complete` is found
    assert submit_job(rt, "j2").reason == "already text_ready"
    assert rt.store.get("j2").int("attempts") == 0  # the message claimed nothing
    complete = {"code": 200, "data": {"callbackType": "complete", "task_id": "T9",
                                      "data": [{"id": "a", "audio_url": "https://c/a.mp3"}]}}
    assert client.post(url, json=complete).json["state"] == "succeeded"
    assert [h["to"] for h in rt.store.history("j2")][-3:] == [
        "submitted", "text_ready", "succeeded"]


def test_every_callback_that_moves_a_job_records_its_task(url_signed_app):
    """Given jobs without a task in queued and submitting, expect each stage a callback moves
    them to to carry the upstream task id (never a state without one)."""
    client, rt = url_signed_app
    rt.store.create("j3", "add-vocals", {})
    rt.store.transition("j3", JobState.SUBMITTING, "submit", fields={"attempt_id": "A3"})
    url2, url3 = requeued_after_uncertain(rt), f"/v1/callbacks/j3?sig={sign(rt.secret, 'j3')}"
    for url, job_id, kind in ((url2, "j2", "first"), (url3, "j3", "complete")):
        cb = {"code": 200, "data": {"callbackType": kind, "task_id": f"T-{job_id}",
                                    "data": [{"id": "a", "audio_url": "https://c/a.mp3"}]}}
        assert client.post(url, json=cb).status_code == 200
        job = rt.store.get(job_id)
        assert job.upstream_task_id == f"T-{job_id}" and job.state.value != "queued"
        for entry in rt.store.history(job_id):
            if entry["to"] in ("submitted", "text_ready", "first_ready", "succeeded"):
                assert job.upstream_task_id


def test_an_error_callback_of_a_requeued_attempt_fails_the_job_with_its_task(url_signed_app):
    client, rt = url_signed_app
    url = requeued_after_uncertain(rt)
    error = {"code": 400, "msg": "content violation",
             "data": {"callbackType": "error", "task_id": "T9", "data": None}}
    assert client.post(url, json=error).json["state"] == "failed"
    job = rt.store.get("j2").to_public()
    assert job["upstream_task_id"] == "T9" and job["error"]["code"] == 400
    assert rt.redis.zscore(rt.keys.parked, "j2") is None


def test_a_callback_of_a_task_the_job_does_not_own_never_moves_it(url_signed_app):
    """Given a job that owns T1, and a job that ended before any task, expect callbacks of
    other tasks to move neither (the tasks recorded as duplicates, the answer 200)."""
    client, rt = url_signed_app
    url = f"/v1/callbacks/j1?sig={sign(rt.secret, 'j1')}"
    for kind in ("text", "complete", "error"):
        cb = {"code": 200 if kind != "error" else 400,
              "data": {"callbackType": kind, "task_id": "T2", "data": []}}
        resp = client.post(url, json=cb)
        assert resp.status_code == 200 and resp.json["msg"] == "no change"
    job = rt.store.get("j1").to_public()
    assert job["state"] == "submitted" and job["upstream_task_id"] == "T1"
    assert job["duplicate_task_ids"] == ["T2"]
    rt.store.create("j4", "add-vocals", {})
    jobs.cancel(rt, "j4")
    url4 = f"/v1/callbacks/j4?sig={sign(rt.secret, 'j4')}"
    assert client.post(url4, json=body("complete") | {"data": {
        "callbackType": "complete", "task_id": "T4", "data": []}}).json["state"] == "cancelled"
    job = rt.store.get("j4").to_public()
    assert job["upstream_task_id"] is None and job["duplicate_task_ids"] == ["T4"]
