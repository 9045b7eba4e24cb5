"""Never lose a job, never pay twice: intent before the call, adoption, grace, outbox, kills."""

import os
import signal
import subprocess

import pytest
import requests

from backbeat.config.settings import Settings
from backbeat.workers.runtime import Runtime
from backbeat.workers.signing import sign

pytestmark = pytest.mark.integration


def vocals(title):
    return {"uploadUrl": "https://example.com/b.mp3", "title": title, "prompt": "la",
            "style": "Jazz", "negativeTags": "none"}


def test_timed_out_call_is_adopted_by_its_callback_not_paid_twice(stack, client, payload):
    sim = stack["sim"]
    sim.set_knobs(accept_timeout_rate=1.0, accept_timeout_sleep_s=5.0)
    job = client.enqueue("add-vocals", payload.vocals("Uncertain one"))
    done = client.wait(job["id"], timeout=90)
    assert done["state"] == "succeeded" and done["attempts"] == 1
    record = Runtime(Settings.from_env()).store.get(job["id"])
    assert record.get("adopted") == "1"
    stats = sim.stats()
    assert stats["accepted"] == 1 and stats["duplicates_by_title"] == 0
    assert stats["timeouts_after_accept"] == 1


def test_no_callback_within_grace_resubmits_and_reports_it(stack, client, payload, wait):
    """Given an uncertain call whose callbacks never come, expect a resubmission after the
    grace period: a deliberate, recorded duplicate, never a silent one."""
    sim = stack["sim"]
    sim.set_knobs(accept_timeout_rate=1.0, accept_timeout_sleep_s=5.0, callbacks_enabled=False)
    job = client.enqueue("add-vocals", payload.vocals("Grace exceeded"))
    # the simulator draws the fault when a call arrives: once the first call is in, only it
    # times out (switching off later raced the resubmission itself)
    wait(lambda: sim.stats()["calls_total"] >= 1, timeout=60, what="the first create call")
    sim.set_knobs(accept_timeout_rate=0.0)
    done = client.wait(job["id"], timeout=90)
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert Runtime(Settings.from_env()).store.get(job["id"]).int("resubmits") == 1
    assert sim.stats()["duplicates_by_title"] == 1  # paid twice, and the job says why


def test_fail_policy_fails_an_unadopted_submission(fleet, sim):
    sim.set_knobs(accept_timeout_rate=1.0, accept_timeout_sleep_s=5.0, callbacks_enabled=False)
    f = fleet("fu", workers=1, BACKBEAT_UNCERTAIN_POLICY="fail", BACKBEAT_UNCERTAIN_GRACE="2")
    job = f.client.enqueue("add-vocals", vocals("Fail policy"))
    done = f.client.wait(job["id"], timeout=90)
    assert done["state"] == "failed" and done["error"]["code"] == "uncertain"
    assert sim.stats()["accepted"] == 1


def test_second_upstream_task_is_recorded_and_counted(stack, client, payload):
    web, sim = stack["web"], stack["sim"]
    sim.set_knobs(text_after_s=60, first_after_s=60, complete_after_s=60)
    job = client.enqueue("add-vocals", payload.vocals("Two tasks"))
    client.wait(job["id"], timeout=60, until=frozenset({__import__(
        "backbeat.workers.states", fromlist=["JobState"]).JobState.SUBMITTED}))
    stray = {"code": 200, "msg": "ok", "data": {"callbackType": "text", "task_id": "f" * 32,
                                                "data": []}}
    secret = Runtime(Settings.from_env()).secret
    url = f"{web}/v1/callbacks/{job['id']}?sig={sign(secret, job['id'])}"
    assert requests.post(url, json=stray, timeout=10).status_code == 200
    after = client.get(job["id"])
    assert after["duplicate_task_ids"] == ["f" * 32] and after["state"] == "submitted"
    metrics = requests.get(f"{web}/metrics", timeout=10).text
    assert metric(metrics, "backbeat_duplicate_upstream_tasks_total") == 1


def metric(text, name):
    """The value of the sample ``name`` (no labels) in Prometheus text; KeyError if absent."""
    samples = dict(line.split(" ", 1) for line in text.splitlines()
                   if line and not line.startswith("#"))
    return float(samples[name])


def test_producer_crash_between_record_and_message_is_repaired(fleet, sim):
    """Given a job record written without its message (the producer died in between), expect
    housekeeping to send the message from the outbox and the job to finish once."""
    f = fleet("fo", workers=1, BACKBEAT_OUTBOX_GRACE="1")
    rt = Runtime(f.settings)
    job, created = rt.store.create("crashed-producer", "add-vocals", vocals("Outboxed"))
    assert created and rt.redis.zscore("fo:outbox", job.id)
    done = f.client.wait(job.id, timeout=90)
    assert done["state"] == "succeeded"
    assert sim.stats()["accepted"] == 1 and rt.redis.zscore("fo:outbox", job.id) is None


def test_pool_process_killed_mid_call_is_not_paid_twice(fleet, sim, wait):
    """Given a worker process SIGKILLed while its provider call is in flight, expect the
    redelivered message to treat the job as uncertain, the callback to adopt the task, and
    exactly one paid submission."""
    sim.set_knobs(latency_ms=3000)
    f = fleet("fk", workers=1, concurrency=1, web=True, BACKBEAT_READ_TIMEOUT="10")
    job = f.client.enqueue("add-vocals", vocals("Killed mid-call"))
    # the simulator counts the task when it accepts the call, then holds the answer 3 s: the
    # call is in flight from here (the job's own "submitting" state may already have moved
    # on, as the text callback can adopt the task while the answer is still held)
    wait(lambda: sim.stats()["accepted"] == 1, timeout=60, what="call accepted, answer held")
    worker = next(p for p in f.procs if p.name == "worker0")
    children = subprocess.run(["pgrep", "-P", str(worker.popen.pid)], capture_output=True,
                              text=True).stdout.split()
    assert children, "expected a pool process"
    os.kill(int(children[0]), signal.SIGKILL)
    sim.set_knobs(latency_ms=0)
    done = f.client.wait(job["id"], timeout=120)
    assert done["state"] == "succeeded"
    assert sim.stats()["accepted"] == 1 and sim.stats()["duplicates_by_title"] == 0
    # adopted from the callback (whether the redelivery or the callback came first)
    assert Runtime(f.settings).store.get(job["id"]).get("adopted") == "1"
