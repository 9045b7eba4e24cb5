"""Several API keys (an account pool): each key's own create window, counts and balance,
401 for any other key, and keys shown masked only (/__stats ``by_key``, /__calls ``key``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
import requests

from backbeat.provider.profiles import ENDPOINTS, get_profile
from backbeat.simulator import SimConfig

PROFILES = ("kie", "sunoapi")
#: long keys whose last 4 characters differ (their name in /__stats)
KEY_A = "sk-pool-alpha-0123456789-aaaa"
KEY_B = "sk-pool-bravo-9876543210-bbbb"
KEY_C = "sk-pool-charlie-555555555-cccc"
WRONG = "sk-not-configured-00000-zzzz"
#: a window long enough that nothing leaves it during a test, however slow the machine
LONG = 60.0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(http, sim, body, key: str | None):
    headers = bearer(key) if key is not None else {}
    return http.post(sim.url + ENDPOINTS["add-instrumental"], json=body, headers=headers,
                     timeout=10)


def codes(http, sim, make_body, key, n, tag):
    """Send ``n`` valid creates with ``key`` back to back; the body codes, in order."""
    return [create(http, sim, make_body(title=f"{tag}{i}"), key).json()["code"]
            for i in range(n)]


def drive_concurrently(sim, make_body, per_key: dict[str, int]) -> dict[str, list[int]]:
    """One thread (and connection) per key, all released at once, each sending its count of
    creates back to back; each key's codes in order."""
    out: dict[str, list[int]] = {}
    start = threading.Barrier(len(per_key))

    def run(key: str, n: int) -> None:
        with requests.Session() as session:
            session.trust_env = False
            start.wait(10)
            out[key] = codes(session, sim, make_body, key, n, key[-4:])

    threads = [threading.Thread(target=run, args=item) for item in per_key.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(out) == set(per_key), "a driver thread failed"
    return out


def stats(http, sim):
    return http.get(sim.url + "/__stats", timeout=10).json()


def pool_sim(make_sim, **config):
    base = dict(api_key=KEY_A, api_keys=(KEY_B,), rate_window_s=LONG, callbacks_enabled=False)
    return make_sim(**{**base, **config})


@pytest.mark.parametrize("profile", PROFILES)
def test_a_keys_21st_call_is_throttled_while_the_other_key_is_still_accepted(
        make_sim, http, make_body, profile):
    throttle = get_profile(profile).emits["throttled"]
    sim = pool_sim(make_sim, profile=profile)
    # key A fills its window (20 per 60 s): its 21st call is throttled
    assert codes(http, sim, make_body, KEY_A, 21, "a") == [200] * 20 + [throttle]
    # key B, on the same simulator at the same moment, still has its whole window
    assert codes(http, sim, make_body, KEY_B, 21, "b") == [200] * 20 + [throttle]
    # and A's throttle does not lift because B was served
    assert codes(http, sim, make_body, KEY_A, 1, "a-again") == [throttle]


@pytest.mark.parametrize("profile", PROFILES)
def test_two_keys_at_their_rule_concurrently_the_fleet_makes_twice_the_rule(
        make_sim, http, make_body, profile):
    # Given two keys of 20 per 60 s each
    sim = pool_sim(make_sim, profile=profile, credits_balance=1000, credit_cost=10)
    # When each key sends exactly its rule at once
    out = drive_concurrently(sim, make_body, {KEY_A: 20, KEY_B: 20})
    # Expect every call accepted: no key's window ever holds more than its rule, while the
    # simulator as a whole saw twice the rule in one window
    assert out == {KEY_A: [200] * 20, KEY_B: [200] * 20}
    doc = stats(http, sim)
    each = {"calls_total": 20, "accepted": 20, "throttled": 0, "max_calls_in_window": 20,
            "max_accepted_in_window": 20, "rate_limit": 20, "rate_window_s": LONG,
            "balance": 1000 - 20 * 10}
    assert doc["by_key"] == {"...aaaa": each, "...bbbb": each}
    assert doc["max_calls_in_window"] == 40 and doc["max_accepted_in_window"] == 40
    assert (doc["calls_total"], doc["accepted"], doc["throttled"]) == (40, 40, 0)
    assert doc["balances"] == {"...aaaa": 800, "...bbbb": 800}


@pytest.mark.parametrize("profile", PROFILES)
def test_two_keys_driven_past_their_rule_concurrently_are_counted_exactly(
        make_sim, http, make_body, profile):
    throttle = get_profile(profile).emits["throttled"]
    sim = pool_sim(make_sim, profile=profile)
    # When two keys send 25 and 23 calls at once (rule: 20 per 60 s each)
    out = drive_concurrently(sim, make_body, {KEY_A: 25, KEY_B: 23})
    # Expect each key's first 20 accepted, the rest throttled, whatever the interleaving
    assert out == {KEY_A: [200] * 20 + [throttle] * 5, KEY_B: [200] * 20 + [throttle] * 3}
    doc = stats(http, sim)
    a, b = doc["by_key"]["...aaaa"], doc["by_key"]["...bbbb"]
    assert (a["calls_total"], a["accepted"], a["throttled"]) == (25, 20, 5)
    assert (b["calls_total"], b["accepted"], b["throttled"]) == (23, 20, 3)
    # every call reached the rate check within one window; only the rule was admitted
    assert (a["max_calls_in_window"], a["max_accepted_in_window"]) == (25, 20)
    assert (b["max_calls_in_window"], b["max_accepted_in_window"]) == (23, 20)
    # the top-level figures stay those of every call together
    assert (doc["calls_total"], doc["accepted"], doc["throttled"]) == (48, 40, 8)
    assert (doc["max_calls_in_window"], doc["max_accepted_in_window"]) == (48, 40)
    # and /__calls agrees, call by call
    calls = http.get(sim.url + "/__calls", timeout=10).json()
    for label, summary in doc["by_key"].items():
        mine = [c for c in calls if c["key"] == label]
        assert len(mine) == summary["calls_total"]
        assert sum(c["outcome"] == "accepted" for c in mine) == summary["accepted"]
        assert sum(c["outcome"] == "throttled" for c in mine) == summary["throttled"]


def test_each_key_can_have_its_own_rule(make_sim, http, make_body):
    sim = pool_sim(make_sim, profile="kie", rate_limit=3, key_rates={KEY_A: (2, 30.0)})
    assert codes(http, sim, make_body, KEY_A, 3, "a") == [200, 200, 429]
    assert codes(http, sim, make_body, KEY_B, 4, "b") == [200, 200, 200, 429]
    by_key = stats(http, sim)["by_key"]
    assert (by_key["...aaaa"]["rate_limit"], by_key["...aaaa"]["rate_window_s"]) == (2, 30.0)
    assert (by_key["...bbbb"]["rate_limit"], by_key["...bbbb"]["rate_window_s"]) == (3, LONG)
    assert by_key["...aaaa"]["max_accepted_in_window"] == 2
    assert by_key["...bbbb"]["max_accepted_in_window"] == 3


@pytest.mark.parametrize("profile", PROFILES)
def test_polls_and_credit_calls_take_a_place_in_their_own_keys_window(
        make_sim, http, make_body, profile):
    spec = get_profile(profile)
    throttle = spec.emits["throttled"]
    sim = pool_sim(make_sim, profile=profile, rate_limit=3, polls_count_in_window=True,
                   poll_limit_per_s=100)
    task_id = create(http, sim, make_body(), KEY_A).json()["data"]["taskId"]
    poll = sim.url + ENDPOINTS["record-info"]
    # A's window (3): its create, one poll and one credit call fill it
    assert http.get(poll, params={"taskId": task_id}, headers=bearer(KEY_A),
                    timeout=10).json()["code"] == 200
    assert http.get(sim.url + spec.credit_path, headers=bearer(KEY_A),
                    timeout=10).json()["code"] == 200
    assert codes(http, sim, make_body, KEY_A, 1, "a") == [throttle]
    assert http.get(sim.url + spec.credit_path, headers=bearer(KEY_A),
                    timeout=10).json()["code"] == throttle
    # B creates, polls its own task and checks its credits in its own window: its 4th call
    # is the one throttled
    own = create(http, sim, make_body(title="b-own"), KEY_B).json()["data"]["taskId"]
    assert http.get(poll, params={"taskId": own}, headers=bearer(KEY_B),
                    timeout=10).json()["code"] == 200
    assert http.get(sim.url + spec.credit_path, headers=bearer(KEY_B),
                    timeout=10).json()["code"] == 200
    assert codes(http, sim, make_body, KEY_B, 1, "b") == [throttle]


@pytest.mark.parametrize("profile", PROFILES)
def test_a_task_is_seen_only_by_the_key_that_created_it(make_sim, http, make_body, profile):
    """A task id belongs to its account: record-info with another pooled key answers the
    profile's "not found" refusal (counted as polls_other_key), with its own key the data."""
    spec = get_profile(profile)
    sim = pool_sim(make_sim, profile=profile)
    task_id = create(http, sim, make_body(), KEY_A).json()["data"]["taskId"]
    poll = sim.url + ENDPOINTS["record-info"]
    other = http.get(poll, params={"taskId": task_id}, headers=bearer(KEY_B), timeout=10).json()
    assert other["code"] == spec.emits["invalid"] and "not found" in other["msg"]
    assert http.get(poll, params={"taskId": task_id}, headers=bearer(KEY_A),
                    timeout=10).json()["code"] == 200
    doc = stats(http, sim)
    assert doc["polls_other_key"] == 1 and doc["polls_unknown_task"] == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_a_key_outside_the_pool_is_refused_everywhere(make_sim, http, make_body, profile):
    spec = get_profile(profile)
    sim = pool_sim(make_sim, profile=profile)
    task_id = create(http, sim, make_body(), KEY_B).json()["data"]["taskId"]
    for key in (WRONG, None, KEY_A + "x", KEY_A[:-1]):
        assert create(http, sim, make_body(), key).json()["code"] == 401
        headers = bearer(key) if key is not None else {}
        assert http.get(sim.url + ENDPOINTS["record-info"], params={"taskId": task_id},
                        headers=headers, timeout=10).json()["code"] == 401
        assert http.get(sim.url + spec.credit_path, headers=headers,
                        timeout=10).json()["code"] == 401
    doc = stats(http, sim)
    assert doc["unauthorized"] == 4 and doc["accepted"] == 1
    # refused keys are no accounts: by_key names the configured keys only (unused ones too)
    assert sorted(doc["by_key"]) == ["...aaaa", "...bbbb"]
    assert doc["by_key"]["...aaaa"]["calls_total"] == 0
    assert doc["by_key"]["...bbbb"]["calls_total"] == 1


def test_keys_appear_masked_only_in_stats_calls_and_logs(
        make_sim, http, make_body, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    sim = pool_sim(make_sim, profile="kie", api_keys=(KEY_B, KEY_C), verbose=True,
                   key_rates={KEY_C: (1, LONG)}, rate_limit=2)
    for key in (KEY_A, KEY_B, KEY_C, KEY_C, WRONG):
        task_id = create(http, sim, make_body(title=key[-4:]), key).json()["data"]
        if task_id:
            http.get(sim.url + ENDPOINTS["record-info"], params={"taskId": task_id["taskId"]},
                     headers=bearer(key), timeout=10)
    http.get(sim.url + get_profile("kie").credit_path, headers=bearer(KEY_B), timeout=10)
    calls = http.get(sim.url + "/__calls", timeout=10).json()
    assert [c["key"] for c in calls] == ["...aaaa", "...bbbb", "...cccc", "...cccc", "...zzzz"]
    assert [c["outcome"] for c in calls] == [
        "accepted", "accepted", "accepted", "throttled", "unauthorized"]
    texts = [json.dumps(stats(http, sim)), json.dumps(calls)]
    texts += [http.get(sim.url + path, timeout=10).text for path in ("/__polls", "/__faults")]
    texts += [repr(sim.config), capsys.readouterr().err, caplog.text]
    assert "POST /api/v1/generate/add-instrumental" in texts[-2]  # the log was captured
    for key in (KEY_A, KEY_B, KEY_C, WRONG):
        secret = key[:-4]  # every part of a key that its name does not show
        assert not [i for i, text in enumerate(texts) if secret in text], key


def test_a_single_api_key_behaves_as_before(make_sim, http, make_body):
    sim = make_sim(profile="sunoapi", api_key=KEY_A, rate_window_s=LONG, callbacks_enabled=False,
                   credits_balance=500)
    assert codes(http, sim, make_body, KEY_A, 21, "a") == [200] * 20 + [430]
    assert codes(http, sim, make_body, WRONG, 1, "w") == [401]
    assert codes(http, sim, make_body, None, 1, "n") == [401]
    doc = stats(http, sim)
    assert (doc["calls_total"], doc["accepted"], doc["throttled"]) == (23, 20, 1)
    assert (doc["unauthorized"], doc["max_calls_in_window"]) == (2, 21)
    assert doc["balances"] == {"...aaaa": 300}
    # by_key holds the one key, with the top-level figures of its own calls
    assert doc["by_key"] == {"...aaaa": {
        "calls_total": 21, "accepted": 20, "throttled": 1, "max_calls_in_window": 21,
        "max_accepted_in_window": 20, "rate_limit": 20, "rate_window_s": LONG, "balance": 300}}


def test_without_keys_there_is_no_auth_and_each_bearer_is_its_own_account(
        make_sim, http, make_body):
    sim = make_sim(profile="kie", rate_limit=2, rate_window_s=LONG, callbacks_enabled=False)
    assert codes(http, sim, make_body, None, 3, "n") == [200, 200, 429]
    assert codes(http, sim, make_body, KEY_A, 3, "a") == [200, 200, 429]
    by_key = stats(http, sim)["by_key"]
    assert sorted(by_key) == ["", "...aaaa"]  # "": the calls without an Authorization header
    assert [by_key[k]["accepted"] for k in ("", "...aaaa")] == [2, 2]


def test_keys_are_checked_and_static():
    with pytest.raises(ValueError, match="last 4") as same_name:
        SimConfig(api_key="first-key-1234", api_keys=("second-key-1234",))
    with pytest.raises(ValueError, match="not configured") as unknown:
        SimConfig(api_key=KEY_A, key_rates={WRONG: (1, 1.0)})
    with pytest.raises(ValueError, match="api_keys"):
        SimConfig(api_keys="one-string-not-a-list")
    with pytest.raises(ValueError, match="key_rates"):
        SimConfig(api_key=KEY_A, key_rates={KEY_A: (0, 1.0)})
    for exc in (same_name, unknown):
        assert "first-key" not in str(exc.value) and WRONG[:-4] not in str(exc.value)
    config = SimConfig(api_key=KEY_A, api_keys=(KEY_B, KEY_A, "", KEY_B))
    assert config.keys == (KEY_A, KEY_B) and config.api_keys == (KEY_B,)
    assert config.with_knobs({"rate_limit": 5}).keys == (KEY_A, KEY_B)
    assert SimConfig(api_keys=(KEY_A, KEY_B)).keys == (KEY_A, KEY_B)
    with pytest.raises(ValueError, match="unknown knob"):
        config.with_knobs({"api_keys": [WRONG]})


def test_the_command_takes_several_keys_and_never_prints_them():
    env = dict(os.environ, BACKBEAT_PROVIDER="kie")
    env.pop("BACKBEAT_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backbeat.simulator", "--port", "0", "--rate", "1/60s",
         "--api-key", KEY_A, "--api-key", KEY_B, "--verbose"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator (kie) listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        create_url = url + ENDPOINTS["add-instrumental"]
        body = {"uploadUrl": "https://files.example.com/stem.mp3", "title": "t",
                "tags": "jazz", "negativeTags": "metal", "callBackUrl": "http://127.0.0.1:9/cb"}
        with requests.Session() as session:
            session.trust_env = False
            got = [session.post(create_url, json=body, headers=bearer(key),
                                timeout=10).json()["code"]
                   for key in (KEY_A, KEY_A, KEY_B, KEY_B, WRONG)]
            by_key = session.get(url + "/__stats", timeout=10).json()["by_key"]
        assert got == [200, 429, 200, 429, 401]
        assert {k: v["accepted"] for k, v in by_key.items()} == {"...aaaa": 1, "...bbbb": 1}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
    assert "POST /api/v1/generate/add-instrumental" in err  # --verbose logged the calls
    for key in (KEY_A, KEY_B, WRONG):
        assert key[:-4] not in line + out + err
