"""Create calls and record-info: accepted flow, validation, auth, malformed input."""

from __future__ import annotations

import json
import socket

import pytest

from backbeat.provider.profiles import ENDPOINTS, get_profile

PROFILES = ("kie", "sunoapi")
CREATE = ("add-instrumental", "add-vocals")


def post(http, sim, endpoint, body, **kw):
    return http.post(sim.url + ENDPOINTS[endpoint], json=body, timeout=10, **kw)


def poll(http, sim, task_id, **kw):
    url = sim.url + ENDPOINTS["record-info"]
    return http.get(url, params={"taskId": task_id}, timeout=10, **kw)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("endpoint", CREATE)
def test_accepted_flow(make_sim, http, make_body, profile, endpoint):
    # Given a simulator for the profile
    # (a slow timeline: the task must still be PENDING when it is polled, however slow the
    # machine)
    sim = make_sim(profile=profile, callbacks_enabled=False, text_after_s=60, first_after_s=60,
                   complete_after_s=60)
    # When a valid request is sent
    resp = post(http, sim, endpoint, make_body(endpoint))
    # Expect 200 with a 32-hex taskId, and record-info knows the task
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["code"] == 200 and answer["msg"] == "success"
    task_id = answer["data"]["taskId"]
    assert len(task_id) == 32 and int(task_id, 16) >= 0
    data = poll(http, sim, task_id).json()["data"]
    assert data["taskId"] == task_id and data["parentMusicId"] == ""
    assert data["status"] == "PENDING" and data["response"]["sunoData"] == []
    assert data["type"] == "GENERATE" and data["operationType"] == endpoint.replace("-", "_")
    assert data["errorCode"] is None and data["errorMessage"] is None
    param = json.loads(data["param"])
    assert param["title"] == "Night Drive" and param["model"] == "V4_5PLUS"
    stats = http.get(sim.url + "/__stats", timeout=10).json()
    assert stats["accepted"] == 1 and stats["calls_total"] == 1 and stats["profile"] == profile


INVALID_CASES = [
    ("missing field", {"title": ...}, "invalid", "title"),
    ("wrong type", {"tags": 5}, "invalid", "tags"),
    ("weight 0.123", {"styleWeight": 0.123}, "invalid", "styleWeight"),
    ("weight above 1", {"audioWeight": 1.01}, "invalid", "audioWeight"),
    ("weight bool", {"weirdnessConstraint": True}, "invalid", "weirdnessConstraint"),
    ("bad model", {"model": "V3_5"}, "invalid", "model"),
    ("bad gender", {"vocalGender": "x"}, "invalid", "vocalGender"),
    ("bad upload url", {"uploadUrl": "ftp://x/a.mp3"}, "invalid", "uploadUrl"),
    ("bad callback url", {"callBackUrl": "not a url"}, "invalid", "callBackUrl"),
    ("title of 101", {"title": "x" * 101}, "too_long", "title"),
]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("case", "fields", "situation", "field"), INVALID_CASES)
def test_validation_rejects(make_sim, http, make_body, profile, case, fields, situation, field):
    sim = make_sim(profile=profile)
    resp = post(http, sim, "add-instrumental", make_body("add-instrumental", **fields))
    answer = resp.json()
    assert resp.status_code == 200
    assert answer["code"] == get_profile(profile).emits[situation]
    assert field in answer["msg"] and answer["data"] is None
    stats = http.get(sim.url + "/__stats", timeout=10).json()
    assert stats[situation] == 1 and stats["accepted"] == 0


def test_too_long_code_differs_per_profile(make_sim, http, make_body):
    codes = {}
    for profile in PROFILES:
        sim = make_sim(profile=profile)
        body = make_body("add-vocals", title="y" * 101)
        codes[profile] = post(http, sim, "add-vocals", body).json()["code"]
    assert codes == {"kie": 422, "sunoapi": 413}


@pytest.mark.parametrize("profile", PROFILES)
def test_valid_optionals_accepted(make_sim, http, make_body, profile):
    sim = make_sim(profile=profile, callbacks_enabled=False)
    body = make_body(
        "add-vocals", styleWeight=0.12, weirdnessConstraint=0.29, audioWeight=1,
        vocalGender="f", model="V5", title="x" * 100, somethingNew="ignored",
    )
    assert post(http, sim, "add-vocals", body).json()["code"] == 200


def test_v5_5_only_on_sunoapi(make_sim, http, make_body):
    body = make_body(model="V5_5")
    assert post(http, make_sim(profile="sunoapi"), "add-instrumental", body).json()["code"] == 200
    assert post(http, make_sim(profile="kie"), "add-instrumental", body).json()["code"] == 422


@pytest.mark.parametrize("profile", PROFILES)
def test_auth_required_when_key_set(make_sim, http, make_body, profile):
    sim = make_sim(profile=profile, api_key="s3cret", callbacks_enabled=False)
    body = make_body()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        answer = post(http, sim, "add-instrumental", body, headers=headers).json()
        assert answer == {"code": 401, "msg": "You do not have access permissions", "data": None}
    ok = post(http, sim, "add-instrumental", body, headers={"Authorization": "Bearer s3cret"})
    assert ok.json()["code"] == 200
    task_id = ok.json()["data"]["taskId"]
    assert poll(http, sim, task_id).json()["code"] == 401
    good = poll(http, sim, task_id, headers={"Authorization": "Bearer s3cret"})
    assert good.json()["code"] == 200
    assert http.get(sim.url + "/__stats", timeout=10).json()["unauthorized"] == 3


def test_auth_checked_before_validation(make_sim, http):
    sim = make_sim(profile="kie", api_key="k")
    resp = http.post(sim.url + ENDPOINTS["add-vocals"], data=b"{broken", timeout=10)
    assert resp.json()["code"] == 401


@pytest.mark.parametrize("raw", [b"{broken", b"[1, 2]", b"\xff\xfe", b"", b"null"])
def test_malformed_body_is_invalid_not_a_crash(make_sim, http, raw):
    sim = make_sim(profile="sunoapi")
    resp = http.post(sim.url + ENDPOINTS["add-instrumental"], data=raw, timeout=10)
    assert resp.status_code == 200 and resp.json()["code"] == 400


def test_chunked_body_is_read(make_sim, http, make_body):
    sim = make_sim(callbacks_enabled=False)
    chunks = iter([json.dumps(make_body()).encode()])
    resp = http.post(sim.url + ENDPOINTS["add-instrumental"], data=chunks, timeout=10)
    assert resp.json()["code"] == 200


def test_garbage_on_the_socket_gets_no_traceback(make_sim):
    sim = make_sim()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as conn:
        conn.sendall(b"POST /api/v1/generate/add-vocals HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and b'"code": 400' in reply


@pytest.mark.parametrize("profile", PROFILES)
def test_record_info_unknown_or_missing_task(make_sim, http, profile):
    sim = make_sim(profile=profile)
    invalid = get_profile(profile).emits["invalid"]
    for params in ({"taskId": "0" * 32}, {}):
        answer = http.get(sim.url + ENDPOINTS["record-info"], params=params, timeout=10).json()
        assert answer["code"] == invalid and answer["msg"] == "task not found"


def test_unknown_path_and_wrong_method_are_404(make_sim, http):
    sim = make_sim(profile="kie")
    routes = (("GET", "/nope"), ("GET", ENDPOINTS["add-vocals"]), ("DELETE", "/__stats"))
    for method, path in routes:
        resp = http.request(method, sim.url + path, timeout=10)
        assert resp.status_code == 404 and resp.json()["code"] == 404


@pytest.mark.parametrize("profile", PROFILES)
def test_refused_words_are_refused_at_once(make_sim, http, make_body, profile):
    # Given a provider that refuses some words when the call arrives (no task is made)
    sim = make_sim(profile=profile, callbacks_enabled=False, refused_words=["Forbidden"])
    # When a request names one (any case, in title, prompt, tags or style)
    answer = post(http, sim, "add-vocals", make_body("add-vocals", style="forbidden jazz")).json()
    # Expect the profile's invalid code at once, nothing accepted or charged
    assert answer["code"] == get_profile(profile).emits["invalid"] and answer["data"] is None
    assert "Forbidden" in answer["msg"]
    assert post(http, sim, "add-vocals", make_body("add-vocals")).json()["code"] == 200
    stats = http.get(sim.url + "/__stats", timeout=10).json()
    assert (stats["invalid"], stats["accepted"], stats["tasks_total"]) == (1, 1, 1)


@pytest.mark.parametrize(("profile", "code"), [("kie", 422), ("sunoapi", 413)])
def test_title_max_is_a_knob(make_sim, http, make_body, profile, code):
    sim = make_sim(profile=profile, callbacks_enabled=False, title_max=10)
    ok = post(http, sim, "add-vocals", make_body("add-vocals", title="x" * 10)).json()
    assert ok["code"] == 200
    answer = post(http, sim, "add-vocals", make_body("add-vocals", title="x" * 11)).json()
    assert answer["code"] == code and "longer than 10" in answer["msg"]
