"""A generation request goes from producer to provider to caller-visible state, on real parts:
redis-server, a Celery worker process, Celery beat, the simulator and the web app over HTTP."""

import os

import pytest
import requests

from backbeat.config.settings import Settings
from backbeat.workers.runtime import Runtime

pytestmark = pytest.mark.integration

API_KEY = os.environ["BACKBEAT_API_KEY"]


def test_a_job_of_each_type_goes_from_queued_to_succeeded(stack, client, payload, auth):
    """Given the whole system, when one job of each type is enqueued (HTTP and Python),
    expect both to succeed with tracks, each paid for exactly once."""
    web, sim = stack["web"], stack["sim"]
    resp = requests.post(f"{web}/v1/jobs", headers=auth, timeout=10, json={
        "type": "add-instrumental", "params": payload.instrumental("Walk 1")})
    assert resp.status_code == 202, resp.text
    http_job = resp.json()
    assert http_job["state"] == "queued" and http_job["type"] == "add-instrumental"
    py_job = client.enqueue("add-vocals", payload.vocals("Walk 2"))

    done = [client.wait(http_job["id"], timeout=90), client.wait(py_job["id"], timeout=90)]
    for job in done:
        assert job["state"] == "succeeded", job
        assert job["upstream_task_id"] and len(job["tracks"]) == 2
        assert job["tracks"][0]["audio_url"].startswith("http")
        assert job["attempts"] == 1 and job["error"] is None
        assert {"queued", "submitting", "submitted", "succeeded"} <= set(job["timestamps"])
    got = requests.get(f"{web}/v1/jobs/{http_job['id']}", headers=auth, timeout=10).json()
    assert got["state"] == "succeeded" and got["tracks"] == done[0]["tracks"]
    stats = sim.stats()
    assert stats["accepted"] == 2 and stats["duplicates_by_title"] == 0


def test_same_idempotency_key_returns_the_same_job(stack, client, payload, auth):
    web, sim = stack["web"], stack["sim"]
    body = {"type": "add-vocals", "params": payload.vocals("Once only")}
    first = requests.post(f"{web}/v1/jobs", json=body, timeout=10,
                          headers={**auth, "Idempotency-Key": "order-42"})
    second = requests.post(f"{web}/v1/jobs", json=body, timeout=10,
                           headers={**auth, "Idempotency-Key": "order-42"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    via_client = client.enqueue("add-vocals", payload.vocals("Once only"),
                                idempotency_key="order-42")
    assert via_client["id"] == first.json()["id"]
    other = requests.post(f"{web}/v1/jobs", timeout=10, headers={**auth,
                          "Idempotency-Key": "order-42"},
                          json={"type": "add-vocals", "params": payload.vocals("Different")})
    assert other.status_code == 409 and "idempotency key" in other.json()["message"]
    assert client.wait(first.json()["id"], timeout=90)["state"] == "succeeded"
    assert sim.stats()["accepted"] == 1


def test_invalid_payloads_never_reach_the_provider(stack, client, payload, auth):
    web, sim = stack["web"], stack["sim"]
    cases = [
        {"type": "add-vocals", "params": {"uploadUrl": "nope", "styleWeight": 0.123}},
        {"type": "add-instrumental", "params": {"title": "x" * 101}},
        {"type": "add-drums", "params": {}},
        {"type": "add-vocals", "params": {"callBackUrl": "https://evil.example.com"}},
    ]
    for body in cases:
        resp = requests.post(f"{web}/v1/jobs", json=body, headers=auth, timeout=10)
        assert resp.status_code == 422, resp.text
        assert resp.json()["errors"]["json"], resp.text
    resp = requests.post(f"{web}/v1/jobs", data="{not json", headers=auth, timeout=10)
    assert resp.status_code == 422
    detail = requests.post(f"{web}/v1/jobs", json=cases[0], headers=auth, timeout=10).json()
    assert "multiple of 0.01" in detail["errors"]["json"]["params"]["styleWeight"][0]
    assert "Not a valid URL." in detail["errors"]["json"]["params"]["uploadUrl"]
    # a valid job sent after them done proves the workers had every chance to call for them
    valid = client.enqueue("add-vocals", payload.vocals("Valid after the invalid"))
    assert client.wait(valid["id"], timeout=90)["state"] == "succeeded"
    calls = requests.get(f"{sim.url}/__calls", timeout=10).json()
    assert [c["title"] for c in calls] == ["Valid after the invalid"]


def test_api_needs_a_producer_token(stack, payload):
    web = stack["web"]
    body = {"type": "add-vocals", "params": payload.vocals()}
    assert requests.post(f"{web}/v1/jobs", json=body, timeout=10).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert requests.post(f"{web}/v1/jobs", json=body, headers=bad, timeout=10).status_code == 401
    assert requests.get(f"{web}/healthz", timeout=10).json()["status"] == "ok"
    spec = requests.get(f"{web}/openapi.json", timeout=10).json()
    assert "/v1/jobs" in spec["paths"] and "/v1/callbacks/{job_id}" in spec["paths"]


def test_a_forged_callback_signature_changes_nothing(stack, client, payload, wait):
    web, sim = stack["web"], stack["sim"]
    sim.set_knobs(text_after_s=60, first_after_s=60, complete_after_s=60)
    job = client.enqueue("add-vocals", payload.vocals("Forgery target"))
    wait(lambda: client.get(job["id"])["state"] == "submitted", what="submitted")
    task_id = client.get(job["id"])["upstream_task_id"]
    forged = {"code": 200, "msg": "All generated successfully.", "data": {
        "callbackType": "complete", "task_id": task_id,
        "data": [{"id": "x", "audio_url": "https://evil.example.com/x.mp3"}]}}
    for sig in ("", "0" * 40, "deadbeef"):
        resp = requests.post(f"{web}/v1/callbacks/{job['id']}?sig={sig}", json=forged, timeout=10)
        assert resp.status_code == 403
    resp = requests.post(f"{web}/v1/callbacks/{job['id']}", json=forged, timeout=10)
    assert resp.status_code == 403
    after = client.get(job["id"])
    assert after["state"] == "submitted" and after["tracks"] == []


def test_all_callbacks_lost_jobs_still_finish_by_polling(stack, client, payload):
    sim = stack["sim"]
    sim.set_knobs(callbacks_enabled=False)
    jobs = [client.enqueue("add-instrumental", payload.instrumental(f"Polled {n}"))
            for n in range(3)]
    for job in jobs:
        done = client.wait(job["id"], timeout=90)
        assert done["state"] == "succeeded" and len(done["tracks"]) == 2
    assert sim.stats()["polls"] >= 3


def test_provider_failure_is_visible(stack, client, payload):
    stack["sim"].set_knobs(fail_rate=1.0)
    job = client.enqueue("add-vocals", payload.vocals("Doomed"))
    done = client.wait(job["id"], timeout=90)
    assert done["state"] == "failed" and done["error"]["code"] == 400


@pytest.mark.parametrize(("knobs", "title", "code"), [
    ({"refused_words": ["forbidden"]}, "forbidden song", 400),
    ({"title_max": 10}, "A title of 24 characters", 413),
], ids=["invalid-400", "too-long-413"])
def test_refused_at_submission_fails_at_once_without_retry(stack, client, payload, knobs, title,
                                                          code):
    """Given a provider that refuses the create call itself (400 invalid / 413 too long, no
    task made), expect the job failed with that code after exactly one call, never retried."""
    sim = stack["sim"]
    sim.set_knobs(**knobs)
    job = client.enqueue("add-vocals", payload.vocals(title))
    done = client.wait(job["id"], timeout=90)
    assert done["state"] == "failed" and done["error"]["code"] == code, done
    assert done["attempts"] == 1 and done["upstream_task_id"] is None
    assert Runtime(Settings.from_env()).store.get(job["id"]).int("failures") == 0
    calls = requests.get(f"{sim.url}/__calls", timeout=10).json()
    assert [(c["title"], c["code"]) for c in calls] == [(title, code)]
    assert sim.stats()["accepted"] == 0


def test_sensitive_words_fail_the_generation_after_acceptance(stack, client, payload):
    """Given a provider that accepts the call and fails the generation later (sensitive words),
    expect the job failed with the provider's code after one paid call."""
    sim = stack["sim"]
    sim.set_knobs(sensitive_words=["forbidden"])
    job = client.enqueue("add-vocals", payload.vocals("forbidden song"))
    done = client.wait(job["id"], timeout=90)
    assert done["state"] == "failed" and done["error"]["code"] == 400, done
    assert "sensitive" in done["error"]["message"]
    assert done["attempts"] == 1 and done["upstream_task_id"]
    assert sim.stats()["accepted"] == sim.stats()["calls_total"] == 1


def test_batch_stays_inside_the_provider_window_and_key_never_leaks(stack, client, payload):
    """Given 30 jobs at once, expect all to succeed, no window over 20/10s at the provider,
    and the provider key nowhere: not in Celery messages, job records, events or logs."""
    from celery.signals import before_task_publish

    redis, sim = stack["redis"], stack["sim"]
    published: list[str] = []  # every message as it goes to the broker (headers and body)

    def capture(body=None, headers=None, **_kw):
        published.append(repr((headers, body)))

    before_task_publish.connect(capture, weak=False)
    try:
        ids = [client.enqueue("add-instrumental" if n % 2 else "add-vocals",
                              payload.instrumental(f"Batch {n}") if n % 2
                              else payload.vocals(f"Batch {n}"))["id"] for n in range(30)]
    finally:
        before_task_publish.disconnect(capture)
    # 30 jobs at once: the first go to the broker at once, the rest wait in their producer's
    # lane and the pump (beat) sends their messages in turn (read from the broker below)
    keys = Runtime(Settings.from_env()).keys
    laned = [j for j in ids if redis.hexists(keys.lane_of, j)]
    sent = [j for j in ids if any(j in raw for raw in published)]
    assert len(published) == len(sent) >= 1 and sorted(sent + laned) == sorted(ids)
    queued = [m for q in keys.submit_queues for m in redis.lrange(q, 0, -1)]
    for raw in [*published, *queued]:
        assert API_KEY not in raw
    for job_id in ids:
        assert client.wait(job_id, timeout=120)["state"] == "succeeded"
    stats = sim.stats()
    assert stats["accepted"] == 30 and stats["throttled"] == 0
    assert stats["max_calls_in_window"] <= 20 and stats["duplicates_by_title"] == 0
    for key in redis.scan_iter("*", count=1000):
        kind = redis.type(key)
        dump = {"string": lambda k: redis.get(k), "hash": lambda k: str(redis.hgetall(k)),
                "list": lambda k: str(redis.lrange(k, 0, -1)),
                "zset": lambda k: str(redis.zrange(k, 0, -1)),
                "set": lambda k: str(redis.smembers(k)),
                "stream": lambda k: str(redis.xrange(k))}.get(kind, lambda k: "")(key)
        assert API_KEY not in (dump or ""), key
    for proc in (stack["worker"], stack["beat"]):
        assert API_KEY not in proc.log_text()


def test_oversized_bodies_and_unknown_routes_get_json_errors(stack, auth):
    web = stack["web"]
    huge = {"type": "add-vocals", "params": {"prompt": "x" * 70_000}}
    resp = requests.post(f"{web}/v1/jobs", json=huge, headers=auth, timeout=10)
    assert resp.status_code == 413 and resp.json()["code"] == 413
    missing = requests.get(f"{web}/v1/nope", headers=auth, timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == 404
    wrong = requests.put(f"{web}/v1/jobs", headers=auth, timeout=10)
    assert wrong.status_code == 405 and wrong.json()["code"] == 405
    gone = requests.get(f"{web}/v1/jobs/no-such-job", headers=auth, timeout=10)
    assert gone.status_code == 404 and "no-such-job" in gone.json()["message"]
