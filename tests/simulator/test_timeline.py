"""Task timeline and stage callbacks: success, failure, skipped stages, signing, retries."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from backbeat.provider.profiles import ENDPOINTS

# polls are fast here, so the per-task poll limit is lifted
FAST = {
    "text_after_s": 0.2, "first_after_s": 0.4, "complete_after_s": 0.6, "poll_limit_per_s": 1000,
}
SNAKE_KEYS = {
    "id", "audio_url", "stream_audio_url", "image_url", "prompt", "model_name", "title", "tags",
    "createTime", "duration",
}
SOURCE_KEYS = {"source_audio_url", "source_stream_audio_url", "source_image_url"}


def submit(http, sim, body, endpoint="add-instrumental"):
    answer = http.post(sim.url + ENDPOINTS[endpoint], json=body, timeout=10).json()
    assert answer["code"] == 200
    return answer["data"]["taskId"]


def record(http, sim, task_id):
    url = sim.url + ENDPOINTS["record-info"]
    return http.get(url, params={"taskId": task_id}, timeout=10).json()["data"]


@pytest.mark.parametrize("profile", ["kie", "sunoapi"])
@pytest.mark.parametrize("endpoint", ["add-instrumental", "add-vocals"])
def test_reaches_success_with_three_callbacks(
    make_sim, http, make_body, receiver, wait_until, profile, endpoint
):
    # Given a fast timeline and a callback receiver
    sim = make_sim(profile=profile, **FAST)
    task_id = submit(http, sim, make_body(endpoint, receiver.url), endpoint)
    # When the task runs to the end
    data = wait_until(lambda: (d := record(http, sim, task_id))["status"] == "SUCCESS" and d)
    wait_until(lambda: len(receiver.bodies(task_id)) == 3)
    # Expect record-info with all tracks in camelCase
    tracks = data["response"]["sunoData"]
    assert len(tracks) == 2 and data["response"]["taskId"] == task_id
    assert {"audioUrl", "streamAudioUrl", "imageUrl", "modelName", "createTime"} <= set(tracks[0])
    assert tracks[0]["title"] == "Night Drive" and len(tracks[0]["createTime"]) == 19
    # ... and text, first, complete callbacks in order, snake_case items
    text, first, complete = receiver.bodies(task_id)
    assert receiver.types(task_id) == ["text", "first", "complete"]
    assert text == {
        "code": 200,
        "msg": "Text generation completed successfully.",
        "data": {"callbackType": "text", "task_id": task_id, "data": []},
    }
    assert len(first["data"]["data"]) == 1 and len(complete["data"]["data"]) == 2
    expected = SNAKE_KEYS | (SOURCE_KEYS if profile == "sunoapi" else set())
    assert set(complete["data"]["data"][0]) == expected
    assert [t["id"] for t in complete["data"]["data"]] == [t["id"] for t in tracks]
    # the simulator records a delivery after the receiver answered: wait for it, do not race it
    wait_until(lambda: http.get(sim.url + "/__stats", timeout=10).json()["callbacks_sent"] == 3)
    info = http.get(f"{sim.url}/__tasks/{task_id}", timeout=10).json()
    assert info["status"] == "SUCCESS"
    assert [c["type"] for c in info["callbacks"] if c["outcome"] == "sent"] == [
        "text", "first", "complete",
    ]


def test_status_never_goes_backwards(make_sim, http, make_body, wait_until):
    order = ["PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "SUCCESS"]
    sim = make_sim(callbacks_enabled=False, **FAST)
    task_id = submit(http, sim, make_body())
    seen = []
    wait_until(lambda: seen.append(record(http, sim, task_id)["status"]) or seen[-1] == "SUCCESS")
    ranks = [order.index(s) for s in seen]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize(("profile", "code", "msg"), [
    ("kie", 501, "Audio generation failed"),
    ("sunoapi", 400, "Instrumental generation failed"),
])
def test_fail_rate_one_fails_with_error_callback(
    make_sim, http, make_body, receiver, wait_until, profile, code, msg
):
    sim = make_sim(profile=profile, fail_rate=1.0, **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url))
    data = wait_until(
        lambda: (d := record(http, sim, task_id))["status"] == "GENERATE_AUDIO_FAILED" and d
    )
    assert data["errorCode"] == code and data["errorMessage"] == msg
    wait_until(lambda: "error" in receiver.types(task_id))
    assert receiver.types(task_id) == ["text", "first", "error"]
    assert receiver.bodies(task_id)[-1] == {
        "code": code, "msg": msg,
        "data": {"callbackType": "error", "task_id": task_id, "data": None},
    }


def test_complete_only_skips_text_and_first(make_sim, http, make_body, receiver, wait_until):
    sim = make_sim(complete_only_rate=1.0, **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url))
    seen = set()
    wait_until(lambda: seen.add(record(http, sim, task_id)["status"]) or "SUCCESS" in seen)
    assert seen <= {"PENDING", "SUCCESS"}
    wait_until(lambda: receiver.types(task_id))
    assert receiver.types(task_id) == ["complete"]
    assert len(receiver.bodies(task_id)[0]["data"]["data"]) == 2


def test_sensitive_word_fails_at_text_time(make_sim, http, make_body, receiver, wait_until):
    sim = make_sim(sensitive_words=["Forbidden"], **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url, tags="forbidden rock"))
    wait_until(lambda: record(http, sim, task_id)["status"] == "SENSITIVE_WORD_ERROR")
    wait_until(lambda: receiver.types(task_id))
    assert receiver.types(task_id) == ["error"]
    assert record(http, sim, task_id)["errorCode"] == 400


def test_kie_hmac_headers_verify(make_sim, http, make_body, receiver, wait_until):
    key = "hmac-key-123"
    sim = make_sim(profile="kie", webhook_hmac_key=key, complete_only_rate=1.0, **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url))
    wait_until(lambda: receiver.bodies(task_id))
    headers = receiver.received[0]["headers"]
    timestamp = headers["X-Webhook-Timestamp"]
    expected = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(base64.b64decode(headers["X-Webhook-Signature"]), expected)
    assert int(timestamp) > 1_600_000_000


def test_no_signature_without_key(make_sim, http, make_body, receiver, wait_until):
    sim = make_sim(profile="sunoapi", complete_only_rate=1.0, **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url))
    wait_until(lambda: receiver.bodies(task_id))
    assert "X-Webhook-Signature" not in receiver.received[0]["headers"]


def test_failed_callback_retried_then_given_up(make_sim, http, make_body, receiver, wait_until):
    receiver.fail_with = 503
    sim = make_sim(complete_only_rate=1.0, callback_backoff_scale=0.01, **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url))
    stats = wait_until(
        lambda: (s := http.get(sim.url + "/__stats", timeout=10).json())["callbacks_failed"] and s
    )
    assert stats["callbacks_failed"] == 1 and stats["callbacks_retried"] == 3
    assert stats["callbacks_sent"] == 0
    assert len(receiver.bodies(task_id)) == 4


def test_retry_succeeds_after_receiver_recovers(make_sim, http, make_body, receiver, wait_until):
    receiver.fail_with = 500
    # retries 2.5 s, 5 s, 10 s apart: ample time to recover the receiver before the last
    sim = make_sim(complete_only_rate=1.0, callback_backoff_scale=5, **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url))
    wait_until(lambda: receiver.bodies(task_id))
    receiver.fail_with = None
    wait_until(lambda: http.get(sim.url + "/__stats", timeout=10).json()["callbacks_sent"] == 1)
    info = http.get(f"{sim.url}/__tasks/{task_id}", timeout=10).json()
    assert info["callbacks"][0]["outcome"] == "sent" and info["callbacks"][0]["attempts"] >= 2


def test_lost_and_duplicated_callbacks(make_sim, http, make_body, receiver, wait_until):
    sim = make_sim(callback_loss_rate=1.0, **FAST)
    lost_id = submit(http, sim, make_body(callback_url=receiver.url))
    wait_until(lambda: http.get(sim.url + "/__stats", timeout=10).json()["callbacks_lost"] == 3)
    assert receiver.bodies(lost_id) == []
    http.post(sim.url + "/__faults", json={"callback_loss_rate": 0, "callback_duplicate_rate": 1},
              timeout=10)
    dup_id = submit(http, sim, make_body(callback_url=receiver.url, title="dup"))
    wait_until(lambda: len(receiver.bodies(dup_id)) == 6)
    assert sorted(receiver.types(dup_id)) == sorted(["text", "first", "complete"] * 2)
    # the ledger counts a delivery after the receiver answered: wait for it, do not race it
    stats = wait_until(lambda: (lambda s: s if s["callbacks_sent"] == 6 else None)(
        http.get(sim.url + "/__stats", timeout=10).json()))
    assert stats["callbacks_duplicated"] == 3


def test_callbacks_disabled(make_sim, http, make_body, receiver, wait_until):
    sim = make_sim(callbacks_enabled=False, **FAST)
    task_id = submit(http, sim, make_body(callback_url=receiver.url))
    wait_until(lambda: record(http, sim, task_id)["status"] == "SUCCESS")
    stats = http.get(sim.url + "/__stats", timeout=10).json()
    assert stats["callbacks_pending"] == 0 and receiver.bodies() == []


def test_seed_makes_runs_reproducible(make_sim, http, make_body):
    ids = []
    for _ in range(2):
        sim = make_sim(seed=7, callbacks_enabled=False)
        task_id = submit(http, sim, make_body())
        ids.append((task_id, record(http, sim, task_id)["taskId"]))
    assert ids[0] == ids[1]
