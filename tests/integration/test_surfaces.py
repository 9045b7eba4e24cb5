"""Reconciliation and caller surfaces on real parts: polls, leases, deadlines, retries,
listing, webhooks and provider-signed callbacks."""

import hashlib
import hmac
import json
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from backbeat.config.settings import Settings
from backbeat.workers import reconcile
from backbeat.workers.reconcile import CycleReport
from backbeat.workers.runtime import Runtime
from backbeat.workers.signing import sign

pytestmark = pytest.mark.integration
SECRET = os.environ["BACKBEAT_SECRET"]


def polls_by_task(sim):
    polls = defaultdict(list)
    for p in requests.get(f"{sim.url}/__polls", timeout=10).json():
        polls[p["taskId"]].append(p["t"])
    return polls


def test_with_callbacks_delivered_polls_stay_rare(stack, client, payload, wait):
    """Given tasks that take 6.5 s upstream (polls due from 1 s after submission, then every
    1-3 s as they age), expect jobs whose stage callbacks arrive to be polled far less often (a
    safety net, three times rarer) than the same jobs whose callbacks never come."""
    sim = stack["sim"]
    # each task's callbacks are planned when it is accepted: the first five never get any
    sim.set_knobs(callbacks_enabled=False, text_after_s=0.2, first_after_s=4,
                  complete_after_s=6.5)
    silent = [client.enqueue("add-vocals", payload.vocals(f"Silent {n}"))["id"] for n in range(5)]
    wait(lambda: sim.stats()["accepted"] == 5, what="the silent five accepted")
    sim.set_knobs(callbacks_enabled=True)
    heard = [client.enqueue("add-vocals", payload.vocals(f"Heard {n}"))["id"] for n in range(5)]
    jobs = {i: client.wait(i, timeout=90) for i in silent + heard}
    assert all(j["state"] == "succeeded" for j in jobs.values())
    polls = polls_by_task(sim)

    def polled(ids):
        return sum(len(polls[jobs[i]["upstream_task_id"]]) for i in ids)

    store = Runtime(Settings.from_env()).store
    assert all(store.get(i).int("callbacks_received") >= 2 for i in heard)
    assert polled(silent) >= 5 * 3, polls  # polls were due, again and again
    assert 3 * polled(heard) <= polled(silent), (polled(heard), polled(silent))


def test_listing_dead_letters_and_retry(stack, client, payload, auth):
    web, sim = stack["web"], stack["sim"]
    sim.set_knobs(fail_rate=1.0)
    job = client.enqueue("add-vocals", payload.vocals("Retry me"))
    assert client.wait(job["id"], timeout=90)["state"] == "failed"
    page = requests.get(f"{web}/v1/jobs", params={"state": "failed", "history": "true"},
                        headers=auth, timeout=10).json()
    dead = [j for j in page["items"] if j["id"] == job["id"]]
    assert dead and [h["to"] for h in dead[0]["history"]][-1] == "failed"
    assert dead[0]["error"]["code"] == 400
    sim.set_knobs(fail_rate=0.0)
    resp = requests.post(f"{web}/v1/jobs/{job['id']}/retry", headers=auth, timeout=10)
    assert resp.status_code == 202 and resp.json()["state"] == "queued"
    again = client.wait(job["id"], timeout=90)
    assert again["state"] == "succeeded" and again["retries"] == 1 and again["error"] is None
    conflict = requests.post(f"{web}/v1/jobs/{job['id']}/retry", headers=auth, timeout=10)
    assert conflict.status_code == 409
    history = requests.get(f"{web}/v1/jobs/{job['id']}", headers=auth, timeout=10).json()
    assert [h["to"] for h in history["history"]].count("queued") == 2


def test_cursor_pagination_over_http(stack, client, payload, auth):
    web = stack["web"]
    ids = {client.enqueue("add-vocals", payload.vocals(f"Page {n}"))["id"] for n in range(7)}
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "type": "add-vocals", **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{web}/v1/jobs", params=params, headers=auth, timeout=10).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    bad = requests.get(f"{web}/v1/jobs", params={"cursor": "zzz"}, headers=auth, timeout=10)
    assert bad.status_code == 422 and "cursor" in bad.json()["errors"]["query"]
    for job_id in ids:
        client.wait(job_id, timeout=90)


def test_loopback_notify_url_is_refused_by_default(stack, payload, auth):
    resp = requests.post(f"{stack['web']}/v1/jobs", headers=auth, timeout=10, json={
        "type": "add-vocals", "params": payload.vocals(), "notify_url": "http://127.0.0.1:9/x"})
    assert resp.status_code == 422
    assert "not allowed" in resp.json()["errors"]["json"]["notify_url"][0]


class Hooks:
    """A loopback webhook receiver that fails the first ``fail_first`` deliveries."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received, self.fail_first = [], fail_first
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.received.append((dict(self.headers), body))
                code = 503 if len(hooks.received) <= hooks.fail_first else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_webhook_is_signed_retried_and_visible(fleet, sim, wait):
    hooks = Hooks(fail_first=1)
    f = fleet("fw", workers=1, BACKBEAT_WEBHOOK_ALLOW_PRIVATE="true",
              BACKBEAT_POLL_INTERVAL="0.5")
    job = f.client.enqueue("add-vocals", {
        "uploadUrl": "https://example.com/b.mp3", "title": "Hooked", "prompt": "la",
        "style": "Jazz", "negativeTags": "none"}, notify_url=hooks.url)
    wait(lambda: f.client.get(job["id"])["notify"]["state"] == "delivered", timeout=90,
         what="webhook delivered")
    hooks.server.shutdown()
    assert len(hooks.received) == 2  # one refused, then delivered
    headers, body = hooks.received[-1]
    stamp, mac = dict(p.split("=", 1) for p in headers["X-Backbeat-Signature"].split(","))\
        .values()
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected) and abs(time.time() - int(stamp)) < 120
    event = json.loads(body)
    assert event["event"] == "job.succeeded" and event["job"]["id"] == job["id"]
    assert f.client.get(job["id"])["notify"]["attempts"] == 2


def test_deadline_expires_a_job_and_late_answers_change_nothing(fleet, sim, wait):
    """Given a job whose deadline passes while a poll of its (finished) task is in flight,
    expect housekeeping to expire it, and then neither the poll's late SUCCESS answer nor a
    late signed ``complete`` callback to change anything."""
    sim.set_knobs(callbacks_enabled=False)  # the task is done upstream 0.9 s after acceptance
    f = fleet("fd", workers=1, web=True, BACKBEAT_POLL_MIN_DELAY="600",
              BACKBEAT_POLL_MAX_DELAY="600")
    job_id = f.client.enqueue("add-vocals", {
        "uploadUrl": "https://example.com/b.mp3", "title": "Too slow", "prompt": "la",
        "style": "Jazz", "negativeTags": "none"})["id"]
    wait(lambda: f.client.get(job_id)["state"] == "submitted", what="submitted")
    task_id = f.client.get(job_id)["upstream_task_id"]
    wait(lambda: sim.stats()["tasks"] == {"SUCCESS": 1}, what="the task done upstream")
    sim.set_knobs(hold_polls=True)  # answers decided on arrival, sent on release
    rt = Runtime(Settings.from_env({**f.env, "BACKBEAT_READ_TIMEOUT": "300"}))
    report = CycleReport()
    with ThreadPoolExecutor(1) as pool:  # a reconcile cycle's poll of the job, in flight
        in_flight = pool.submit(reconcile.poll_one, rt, job_id, report)
        wait(lambda: task_id in polls_by_task(sim), what="the poll sent, its answer held")
        rt.redis.zadd("fd:deadline", {job_id: 0}, xx=True)  # the deadline passes now
        expired = f.client.wait(job_id, timeout=90)
        sim.set_knobs(hold_polls=False)
        in_flight.result(timeout=90)
    assert expired["state"] == "expired" and expired["error"]["code"] == "deadline"
    assert report.polled == 1 and report.outcomes == {"accepted": 1} and report.moved == 0
    complete = {"code": 200, "msg": "All generated successfully.", "data": {
        "callbackType": "complete", "task_id": task_id,
        "data": [{"id": "t1", "audio_url": "https://cdn.example.com/t1.mp3"}]}}
    url = (f"{f.env['BACKBEAT_CALLBACK_BASE_URL']}/v1/callbacks/{job_id}"
           f"?sig={sign(rt.secret, job_id)}")
    late = requests.post(url, json=complete, timeout=10)
    assert late.status_code == 200, late.text
    assert late.json()["msg"] == "no change" and late.json()["state"] == "expired"
    assert f.client.get(job_id) == expired and f.client.get(job_id)["tracks"] == []
    assert [h["to"] for h in f.client.history(job_id)][-1] == "expired"
    assert rt.redis.zscore("fd:deadline", job_id) is None
    assert rt.redis.zscore("fd:poll", job_id) is None
