"""Every documented code on demand: forced create / record-info codes, failure statuses and
callback codes, and the credit endpoints (balance per key, cost per accepted call)."""

from __future__ import annotations

import time

import pytest

from backbeat.provider.profiles import ENDPOINTS, get_profile

FAST = {
    "text_after_s": 0.2, "first_after_s": 0.4, "complete_after_s": 0.6, "poll_limit_per_s": 1000,
}
ERROR_CODES = [(p, c) for p in ("kie", "sunoapi") for c in sorted(get_profile(p).codes)
               if c != 200]


def create(http, sim, body, key="k1"):
    return http.post(sim.url + ENDPOINTS["add-instrumental"], json=body, timeout=10,
                     headers={"Authorization": f"Bearer {key}"})


def record(http, sim, task_id):
    return http.get(sim.url + ENDPOINTS["record-info"], params={"taskId": task_id}, timeout=10)


def credit(http, sim, key="k1", path=None):
    return http.get(sim.url + (path or get_profile(sim.config.profile).credit_path),
                    headers={"Authorization": f"Bearer {key}"}, timeout=10)


@pytest.mark.parametrize(("profile", "code"), ERROR_CODES)
def test_create_code_answers_every_documented_code(make_sim, http, make_body, profile, code):
    # Given the knob set to one documented code (sunoapi 405, kie 409/451, 404, ...)
    sim = make_sim(profile=profile)
    sim.set_knobs(create_code=code)
    resp = create(http, sim, make_body())
    # Then the body carries it with the documented wording; HTTP 200 but for 404 and 5xx
    assert resp.json() == {"code": code, "msg": get_profile(profile).codes[code], "data": None}
    assert resp.status_code == (code if code == 404 or code >= 500 else 200)
    stats = sim.stats()
    assert stats["forced_codes"] == 1 and stats["tasks_total"] == 0  # no task, nothing paid


@pytest.mark.parametrize(("profile", "code"), ERROR_CODES)
def test_record_info_code_answers_every_documented_code(make_sim, http, make_body, profile,
                                                        code):
    sim = make_sim(profile=profile, **FAST)
    task_id = create(http, sim, make_body()).json()["data"]["taskId"]
    sim.set_knobs(record_info_code=code, http_status_errors=True)
    resp = record(http, sim, task_id)
    assert resp.status_code == code and resp.json()["code"] == code
    assert [p["code"] for p in http.get(sim.url + "/__polls", timeout=10).json()] == [code]
    sim.set_knobs(record_info_code=None)
    assert record(http, sim, task_id).json()["code"] == 200


@pytest.mark.parametrize("knob", ["create_code", "record_info_code"])
def test_codes_outside_the_profile_table_are_refused(make_sim, knob):
    sim = make_sim(profile="kie")
    with pytest.raises(ValueError, match="kie table"):
        sim.set_knobs(**{knob: 430})  # sunoapi's throttle, not kie's
    with pytest.raises(ValueError, match="fail_status"):
        sim.set_knobs(fail_status="SUCCESS")


def test_kie_531_callback_and_error_code_refund_the_credits(make_sim, http, make_body, receiver,
                                                            wait_until):
    sim = make_sim(profile="kie", fail_rate=1.0, fail_code=531, credit_cost=12, **FAST)
    task_id = create(http, sim, make_body(callback_url=receiver.url)).json()["data"]["taskId"]
    wait_until(lambda: "error" in receiver.types(task_id))
    assert receiver.bodies(task_id)[-1]["code"] == 531
    data = record(http, sim, task_id).json()["data"]
    assert data["status"] == "GENERATE_AUDIO_FAILED" and data["errorCode"] == 531
    assert credit(http, sim).json()["data"] == sim.config.credits_balance  # refunded: no charge


def test_create_task_failed_fails_early_with_a_500_callback(make_sim, http, make_body,
                                                           receiver, wait_until):
    sim = make_sim(profile="sunoapi", fail_rate=1.0, fail_status="CREATE_TASK_FAILED", **FAST)
    task_id = create(http, sim, make_body(callback_url=receiver.url)).json()["data"]["taskId"]
    wait_until(lambda: receiver.types(task_id))
    assert receiver.types(task_id) == ["error"]
    assert receiver.bodies(task_id)[0]["code"] == 500
    data = record(http, sim, task_id).json()["data"]
    assert data["status"] == "CREATE_TASK_FAILED" and data["errorCode"] is None
    assert data["response"]["sunoData"] == []


def test_callback_exception_shows_tracks_but_sends_no_final_callback(make_sim, http, make_body,
                                                                    receiver, wait_until):
    sim = make_sim(profile="kie", fail_rate=1.0, fail_status="CALLBACK_EXCEPTION", tracks=2,
                   **FAST)
    task_id = create(http, sim, make_body(callback_url=receiver.url)).json()["data"]["taskId"]
    data = wait_until(lambda: (d := record(http, sim, task_id).json()["data"])["status"]
                      == "CALLBACK_EXCEPTION" and d)
    assert len(data["response"]["sunoData"]) == 2 and data["errorCode"] is None
    wait_until(lambda: len(receiver.types(task_id)) >= 2)
    time.sleep(0.5)  # past complete_after_s: no final callback comes
    assert receiver.types(task_id) == ["text", "first"]


@pytest.mark.parametrize("profile", ["kie", "sunoapi"])
def test_credit_endpoint_per_key_balance_and_cost(make_sim, http, make_body, profile):
    # Given 25 credits per key and a cost of 10 per accepted call
    sim = make_sim(profile=profile, credits_balance=25, credit_cost=10)
    assert credit(http, sim).json() == {"code": 200, "msg": "success", "data": 25}
    assert create(http, sim, make_body(title="a")).json()["code"] == 200
    assert create(http, sim, make_body(title="b")).json()["code"] == 200
    # Then the key has 5 left, another key is untouched, and the third call is refused
    assert credit(http, sim).json()["data"] == 5
    assert credit(http, sim, key="k2").json()["data"] == 25
    refused = create(http, sim, make_body(title="c")).json()
    assert refused["code"] == get_profile(profile).emits["credits"]
    assert create(http, sim, make_body(title="c"), key="k2").json()["code"] == 200
    # a refill (setting the knob) tops every key up
    sim.set_knobs(credits_balance=30)
    assert credit(http, sim).json()["data"] == 30
    # the other profile's path is not this provider's
    other = get_profile("sunoapi" if profile == "kie" else "kie").credit_path
    assert credit(http, sim, path=other).json()["code"] == 404


def test_credit_endpoint_checks_the_key(make_sim, http):
    sim = make_sim(profile="kie", api_key="secret")
    assert credit(http, sim, key="wrong").json()["code"] == 401
    assert credit(http, sim, key="secret").json()["code"] == 200
