"""A late callback of an uncertain attempt, arriving after the job went back to ``queued``:
adopted (the task recorded), never resubmitted, and finished by polling when ``complete`` is
lost. Real Redis, Celery worker and beat, web, and the simulator over HTTP."""

import requests

from backbeat.workers.runtime import Runtime
from backbeat.workers.signing import sign


def test_late_callback_after_requeue_is_adopted_and_the_job_succeeds_by_polling(fleet, sim,
                                                                                 wait, payload):
    """Given a create call that times out (the simulator created the task, then held its
    answer), the uncertain grace putting the job back in queue (submissions paused so it stays
    there), and the attempt's ``text`` callback arriving only then, with every later callback
    lost: expect the job to adopt the task, never call the provider again, and succeed by
    polling."""
    sim.set_knobs(accept_timeout_rate=1.0, accept_timeout_sleep_s=6.0, callbacks_enabled=False)
    f = fleet("lc", workers=1, web=True, BACKBEAT_UNCERTAIN_GRACE="2",
              BACKBEAT_READ_TIMEOUT="2")
    job_id = f.client.enqueue("add-vocals", payload.vocals("Late callback"))["id"]
    wait(lambda: sim.stats()["accepted"] == 1, what="the call accepted, its answer held")
    rt = Runtime(f.settings)
    rt.submit_limiter.pause("test: keep the requeued job queued")
    wait(lambda: rt.store.get(job_id).int("resubmits") == 1
         and f.client.get(job_id)["state"] == "queued", what="requeued by the uncertain grace")
    sim.set_knobs(accept_timeout_rate=0.0)
    [task_id] = [c["taskId"] for c in requests.get(f"{sim.url}/__calls", timeout=10).json()
                 if c["taskId"]]
    text = {"code": 200, "msg": "Text generation completed successfully.",
            "data": {"callbackType": "text", "task_id": task_id, "data": []}}
    url = (f"{f.env['BACKBEAT_CALLBACK_BASE_URL']}/v1/callbacks/{job_id}"
           f"?sig={sign(rt.secret, job_id)}")
    resp = requests.post(url, json=text, timeout=30)
    assert resp.status_code == 200 and resp.json()["msg"] == "applied", resp.text
    job = f.client.get(job_id)
    assert job["upstream_task_id"] == task_id and job["state"] == "text_ready"
    rt.submit_limiter.resume()
    done = f.client.wait(job_id, timeout=120)
    assert done["state"] == "succeeded" and done["upstream_task_id"] == task_id
    assert done["attempts"] == 1 and done["duplicate_task_ids"] == []
    assert len(requests.get(f"{sim.url}/__calls", timeout=10).json()) == 1
    assert sim.stats()["accepted"] == 1
    assert done["tracks"] and all(t["expires_at"] and t["prompt"] for t in done["tracks"])
    record = rt.store.get(job_id)
    assert record.get("adopted") == "1" and record.get("adopted_late") == "1"
