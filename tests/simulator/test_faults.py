"""Faults set at start or through POST /__faults, the ledger, and the admin endpoints."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from backbeat.provider.profiles import ENDPOINTS

CREATE_URL = ENDPOINTS["add-vocals"]


def create(http, sim, body, timeout=10):
    return http.post(sim.url + CREATE_URL, json=body, timeout=timeout)


def stats(http, sim):
    return http.get(sim.url + "/__stats", timeout=10).json()


def set_faults(http, sim, **knobs):
    resp = http.post(sim.url + "/__faults", json=knobs, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize(("profile", "credits"), [("kie", 402), ("sunoapi", 429)])
def test_maintenance_and_credits_at_run_time(make_sim, http, make_body, profile, credits):
    sim = make_sim(profile=profile, callbacks_enabled=False)
    body = make_body("add-vocals")
    task_id = create(http, sim, body).json()["data"]["taskId"]
    # When maintenance is switched on, every provider endpoint answers 455
    assert set_faults(http, sim, maintenance=True)["maintenance"] is True
    assert create(http, sim, body).json()["code"] == 455
    poll = http.get(sim.url + ENDPOINTS["record-info"], params={"taskId": task_id}, timeout=10)
    assert poll.json()["code"] == 455
    # When it is off again and credits run out
    set_faults(http, sim, maintenance=False, credits_exhausted=True)
    assert create(http, sim, body).json()["code"] == credits
    set_faults(http, sim, credits_exhausted=False)
    assert create(http, sim, body).json()["code"] == 200
    s = stats(http, sim)
    assert (s["maintenance"], s["credits"], s["accepted"], s["calls_total"]) == (1, 1, 2, 4)


def test_http_status_for_maintenance_and_credits(make_sim, http, make_body):
    sim = make_sim(profile="kie", http_status_errors=True, maintenance=True)
    assert create(http, sim, make_body("add-vocals")).status_code == 455
    set_faults(http, sim, maintenance=False, credits_exhausted=True)
    assert create(http, sim, make_body("add-vocals")).status_code == 402


def test_server_errors_are_http_500(make_sim, http, make_body):
    sim = make_sim(server_error_rate=1.0)
    resp = create(http, sim, make_body("add-vocals"))
    assert resp.status_code == 500 and resp.json()["code"] == 500
    assert stats(http, sim)["server_errors"] == 1


def test_accept_timeout_is_accepted_and_charged(make_sim, http, make_body, wait_until):
    # Given every accepted call answering only after 1 s
    sim = make_sim(accept_timeout_rate=1.0, accept_timeout_sleep_s=1.0, callbacks_enabled=False)
    # When the client gives up after 0.3 s
    with pytest.raises(requests.Timeout):
        create(http, sim, make_body("add-vocals", title="uncertain"), timeout=0.3)
    # Expect the task to exist and be charged anyway (the simulator may record it a moment
    # after the client gave up: wait for it)
    s = wait_until(lambda: (st := stats(http, sim))["timeouts_after_accept"] == 1 and st)
    assert s["accepted"] == 1
    (call,) = http.get(sim.url + "/__calls", timeout=10).json()
    assert call["outcome"] == "timeout_after_accept" and call["title"] == "uncertain"
    assert http.get(f"{sim.url}/__tasks/{call['taskId']}", timeout=10).status_code == 200


@pytest.mark.parametrize(("after", "accepted"), [(False, 0), (True, 1)])
def test_drop_closes_the_connection(make_sim, make_body, after, accepted):
    sim = make_sim(drop_rate=1.0, drop_after_accept=after, callbacks_enabled=False)
    with requests.Session() as fresh, pytest.raises(requests.ConnectionError):
        create(fresh, sim, make_body("add-vocals"))
    with requests.Session() as admin:
        s = stats(admin, sim)
        calls = admin.get(sim.url + "/__calls", timeout=10).json()
    assert s["dropped"] == 1 and s["accepted"] == accepted
    assert calls[0]["code"] is None and (calls[0]["taskId"] is not None) == after


def test_latency_is_added(make_sim, http, make_body):
    sim = make_sim(latency_ms=300, callbacks_enabled=False)
    with pytest.raises(requests.Timeout):
        create(http, sim, make_body("add-vocals"), timeout=0.05)
    set_faults(http, sim, latency_ms=0)


def test_duplicates_by_title(make_sim, http, make_body):
    sim = make_sim(callbacks_enabled=False)
    for title in ("same", "other", "same", "same"):
        assert create(http, sim, make_body("add-vocals", title=title)).json()["code"] == 200
    # same title on the other endpoint is not a duplicate
    http.post(sim.url + ENDPOINTS["add-instrumental"], json=make_body(title="same"), timeout=10)
    s = stats(http, sim)
    assert s["duplicates_by_title"] == 2 and s["duplicate_titles"] == ["same", "same"]


def test_unknown_knob_and_bad_values_are_400(make_sim, http):
    sim = make_sim()
    for payload in ({"no_such_knob": 1}, {"fail_rate": 2}, {"maintenance": "yes"}, [1]):
        resp = http.post(sim.url + "/__faults", json=payload, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"]
    resp = http.post(sim.url + "/__faults", json={"no_such_knob": 1}, timeout=10)
    assert "no_such_knob" in resp.json()["error"]
    assert http.get(sim.url + "/__faults", timeout=10).json()["fail_rate"] == 0.0


def test_faults_get_masks_secret(make_sim, http):
    sim = make_sim(webhook_hmac_key="secret-value", api_key="key-value")
    text = http.get(sim.url + "/__faults", timeout=10).text
    assert "secret-value" not in text and "key-value" not in text


def test_reset_keeps_knobs_unless_asked(make_sim, http, make_body):
    sim = make_sim(rate_limit=1, rate_window_s=60.0, callbacks_enabled=False)
    assert create(http, sim, make_body("add-vocals")).json()["code"] == 200
    set_faults(http, sim, fail_rate=0.5)
    assert http.post(sim.url + "/__reset", timeout=10).json()["reset"] is True
    s = stats(http, sim)
    assert s["calls_total"] == 0 and s["accepted"] == 0 and s["tasks_total"] == 0
    assert http.get(sim.url + "/__faults", timeout=10).json()["fail_rate"] == 0.5
    # the window is cleared too
    assert create(http, sim, make_body("add-vocals")).json()["code"] == 200
    http.post(sim.url + "/__reset", json={"faults": True}, timeout=10)
    assert http.get(sim.url + "/__faults", timeout=10).json()["fail_rate"] == 0.0


def test_admin_health_and_unknown_task(make_sim, http):
    sim = make_sim(profile="kie")
    assert http.get(sim.url + "/__health", timeout=10).json()["status"] == "ok"
    assert http.get(sim.url + "/__tasks/nope", timeout=10).status_code == 404


def test_python_api_matches_admin(make_sim, make_body, http):
    sim = make_sim(callbacks_enabled=False)
    sim.set_knobs(maintenance=True)
    assert create(http, sim, make_body("add-vocals")).json()["code"] == 455
    assert sim.stats()["maintenance"] == 1 and sim.config.maintenance is True


def test_held_polls_answer_what_they_saw_on_arrival_once_released(make_sim, http, make_body,
                                                                  wait_until):
    # Given a task done upstream and record-info answers held
    sim = make_sim(callbacks_enabled=False, text_after_s=0, first_after_s=0, complete_after_s=0)
    task_id = create(http, sim, make_body("add-vocals")).json()["data"]["taskId"]
    set_faults(http, sim, hold_polls=True)
    url = sim.url + ENDPOINTS["record-info"]
    with ThreadPoolExecutor(1) as pool, requests.Session() as other:
        # When a poll arrives
        answer = pool.submit(other.get, url, params={"taskId": task_id}, timeout=60)
        wait_until(lambda: http.get(sim.url + "/__polls", timeout=10).json())
        # Expect its answer held until the knob is off, then the status seen on arrival
        assert not answer.done()
        set_faults(http, sim, hold_polls=False)
        data = answer.result(timeout=60).json()["data"]
    assert data["taskId"] == task_id and data["status"] == "SUCCESS"
    assert stats(http, sim)["polls"] == 1
