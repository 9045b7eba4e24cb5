"""Account create window, per-task poll window, and how throttle answers look."""

from __future__ import annotations

import pytest

from backbeat.provider.profiles import ENDPOINTS
from backbeat.simulator.ledger import max_in_window

CREATE_URL = ENDPOINTS["add-instrumental"]


def create(http, sim, body):
    return http.post(sim.url + CREATE_URL, json=body, timeout=10)


@pytest.mark.parametrize(("profile", "throttle"), [("kie", 429), ("sunoapi", 430)])
def test_21st_call_in_window_is_throttled(make_sim, http, make_body, profile, throttle):
    # Given the default 20-call limit, with a window long enough for a slow machine
    sim = make_sim(profile=profile, rate_window_s=60.0, callbacks_enabled=False)
    # When 25 valid calls arrive back to back
    codes = [create(http, sim, make_body(title=f"t{i}")).json()["code"] for i in range(25)]
    # Expect 20 accepted then the profile's throttle code, answered as HTTP 200
    assert codes == [200] * 20 + [throttle] * 5
    stats = http.get(sim.url + "/__stats", timeout=10).json()
    assert stats["accepted"] == 20 and stats["throttled"] == 5
    assert stats["max_accepted_in_window"] <= 20
    assert stats["max_calls_in_window"] == 25
    assert stats["rate_limit"] == 20 and stats["rate_window_s"] == 60.0


def test_throttled_calls_are_not_admitted(make_sim, http, make_body, wait_until):
    # Given a 2-per-0.5 s window
    sim = make_sim(rate_limit=2, rate_window_s=0.5, callbacks_enabled=False)
    assert [create(http, sim, make_body()).json()["code"] for _ in range(3)] == [200, 200, 430]
    # Expect the window to free up even though throttled calls keep arriving
    wait_until(lambda: create(http, sim, make_body()).json()["code"] == 200)
    assert http.get(sim.url + "/__stats", timeout=10).json()["max_accepted_in_window"] <= 2


def test_invalid_calls_do_not_use_the_window(make_sim, http, make_body):
    sim = make_sim(rate_limit=1, rate_window_s=60.0, callbacks_enabled=False)
    assert create(http, sim, make_body(title=...)).json()["code"] == 400
    assert create(http, sim, make_body()).json()["code"] == 200


@pytest.mark.parametrize(("profile", "throttle"), [("kie", 429), ("sunoapi", 430)])
def test_http_status_errors_and_retry_after(make_sim, http, make_body, profile, throttle):
    sim = make_sim(
        profile=profile, rate_limit=1, rate_window_s=60.0, http_status_errors=True,
        retry_after_s=2.5, callbacks_enabled=False,
    )
    assert create(http, sim, make_body()).status_code == 200
    resp = create(http, sim, make_body())
    assert resp.status_code == throttle and resp.json()["code"] == throttle
    assert resp.headers["Retry-After"] == "3"


def test_retry_after_without_http_status(make_sim, http, make_body):
    sim = make_sim(rate_limit=1, rate_window_s=60.0, retry_after_s=1, callbacks_enabled=False)
    create(http, sim, make_body())
    resp = create(http, sim, make_body())
    assert resp.status_code == 200 and resp.headers["Retry-After"] == "1"


def test_poll_limit_per_task(make_sim, http, make_body):
    # Given 3 polls per task per (long) window
    sim = make_sim(profile="kie", poll_window_s=60.0, callbacks_enabled=False)
    ids = [create(http, sim, make_body(title=t)).json()["data"]["taskId"] for t in "ab"]
    url = sim.url + ENDPOINTS["record-info"]
    codes = [http.get(url, params={"taskId": ids[0]}, timeout=10).json()["code"] for _ in range(4)]
    # Expect the 4th poll of the same task throttled, another task unaffected
    assert codes == [200, 200, 200, 429]
    assert http.get(url, params={"taskId": ids[1]}, timeout=10).json()["code"] == 200
    stats = http.get(sim.url + "/__stats", timeout=10).json()
    assert stats["polls"] == 5 and stats["polls_throttled"] == 1
    assert stats["accepted"] == 2


def test_polls_can_share_the_account_window(make_sim, http, make_body):
    sim = make_sim(
        rate_limit=3, rate_window_s=60.0, polls_count_in_window=True, callbacks_enabled=False
    )
    task_id = create(http, sim, make_body()).json()["data"]["taskId"]
    url = sim.url + ENDPOINTS["record-info"]
    assert http.get(url, params={"taskId": task_id}, timeout=10).json()["code"] == 200
    assert http.get(url, params={"taskId": task_id}, timeout=10).json()["code"] == 200
    assert create(http, sim, make_body()).json()["code"] == 430


def test_max_in_window_is_exact():
    assert max_in_window([], 10) == 0
    assert max_in_window([0.0, 10.0, 20.0], 10) == 1
    assert max_in_window([0.0, 9.99, 10.0, 19.98], 10) == 3
    assert max_in_window([0.0, 9.99, 10.0, 20.0], 10) == 2
    assert max_in_window([5.0, 0.0, 1.0, 2.0, 30.0], 10) == 4
