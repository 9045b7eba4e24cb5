"""Reconciliation and caller surfaces on real parts: polls, leases, deadlines, retries,
listing, webhooks and provider-signed callbacks."""

import hashlib
import hmac
import json
import os
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from backbeat.api.processes import Proc, beat_argv

pytestmark = pytest.mark.integration
SECRET = os.environ["BACKBEAT_SECRET"]


def polls_by_task(sim):
    polls = defaultdict(list)
    for p in requests.get(f"{sim.url}/__polls", timeout=10).json():
        polls[p["taskId"]].append(p["t"])
    return polls


def test_with_callbacks_delivered_polls_stay_rare(stack, client, payload):
    sim = stack["sim"]
    # the text callback comes 0.1 s after acceptance, well before the first poll (1 s after
    # submission), which it pushes back to a safety-net check
    sim.set_knobs(text_after_s=0.1, first_after_s=0.4, complete_after_s=0.7)
    ids = [client.enqueue("add-vocals", payload.vocals(f"Cb {n}"))["id"] for n in range(10)]
    jobs = [client.wait(i, timeout=90) for i in ids]
    assert all(j["state"] == "succeeded" for j in jobs)
    polls = polls_by_task(sim)
    per_job = sum(len(polls[j["upstream_task_id"]]) for j in jobs) / len(jobs)
    assert per_job <= 1.5, per_job


def test_two_beats_never_poll_one_job_twice_in_a_cycle(stack, client, payload, run_dir):
    """Given a second beat (and so twice the reconcile cycles), expect each job's polls to stay
    spaced by its poll delay (1 s here): leases stop overlapping cycles from double polling."""
    sim = stack["sim"]
    sim.set_knobs(callbacks_enabled=False, text_after_s=1, first_after_s=3, complete_after_s=6)
    second = Proc.start("beat2", beat_argv(run_dir / "beat2-schedule"), dict(os.environ),
                        run_dir)
    try:
        second.wait_for_log("beat: Starting...", 60)
        ids = [client.enqueue("add-instrumental", payload.instrumental(f"Two beats {n}"))["id"]
               for n in range(6)]
        jobs = [client.wait(i, timeout=120) for i in ids]
    finally:
        second.stop()
    assert all(j["state"] == "succeeded" for j in jobs)
    polls = polls_by_task(sim)
    for job in jobs:
        times = sorted(polls[job["upstream_task_id"]])
        assert len(times) >= 2
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 0.9, (job["id"], gaps)


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
    sim.set_knobs(text_after_s=30, first_after_s=30, complete_after_s=30)
    f = fleet("fd", workers=1, BACKBEAT_DEADLINE_ADD_VOCALS="2")
    job = f.client.enqueue("add-vocals", {
        "uploadUrl": "https://example.com/b.mp3", "title": "Too slow", "prompt": "la",
        "style": "Jazz", "negativeTags": "none"})
    done = f.client.wait(job["id"], timeout=90)
    assert done["state"] == "expired" and done["error"]["code"] == "deadline"
    assert f.client.rt.redis.zscore("fd:deadline", job["id"]) is None
