"""The provider client against the simulator over HTTP: every answer gets one outcome."""

import os
import socket
import threading

import pytest

from backbeat.config.settings import Secret
from backbeat.devstack.processes import free_port
from backbeat.provider.client import ProviderClient, parse_retry_after
from backbeat.provider.profiles import Outcome, get_profile

#: an add-instrumental job's params (the client adds the callBackUrl)
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "title": "T", "tags": "rock",
          "negativeTags": "metal"}
CALLBACK = "http://127.0.0.1:9/cb"


def make_client(url, profile="sunoapi", key=None, read_timeout=3.0):
    return ProviderClient(get_profile(profile), url, Secret(key or os.environ["BACKBEAT_API_KEY"]),
                          connect_timeout_s=2, read_timeout_s=read_timeout)


def test_accepted_carries_the_task_id(sim):
    answer = make_client(sim.url).create("add-instrumental", PARAMS, CALLBACK)
    assert answer.outcome is Outcome.ACCEPTED and len(answer.task_id) == 32
    info = make_client(sim.url).record_info(answer.task_id)
    assert info.outcome is Outcome.ACCEPTED and info.data["taskId"] == answer.task_id


@pytest.mark.parametrize(("knobs", "outcome", "code"), [
    ({"maintenance": True}, Outcome.MAINTENANCE, 455),
    ({"credits_exhausted": True}, Outcome.CREDITS, 429),
    ({"server_error_rate": 1.0}, Outcome.TRANSIENT, 500),
    ({"rate_limit": 1}, Outcome.THROTTLED, 430),
])
def test_body_codes_are_classified(sim, knobs, outcome, code):
    sim.set_knobs(**knobs)
    client = make_client(sim.url)
    if "rate_limit" in knobs:
        assert client.create("add-instrumental", PARAMS, CALLBACK).outcome is Outcome.ACCEPTED
    answer = client.create("add-instrumental", PARAMS, CALLBACK)
    assert (answer.outcome, answer.code) == (outcome, code)


def test_http_status_style_and_retry_after(sim):
    sim.set_knobs(rate_limit=1, http_status_errors=True, retry_after_s=7)
    client = make_client(sim.url)
    client.create("add-instrumental", PARAMS, CALLBACK)
    answer = client.create("add-instrumental", PARAMS, CALLBACK)
    assert answer.outcome is Outcome.THROTTLED and answer.retry_after_s == 7


def test_bad_key_is_unauthorized(sim):
    answer = make_client(sim.url, key="wrong").create("add-instrumental", PARAMS, CALLBACK)
    assert answer.outcome is Outcome.UNAUTHORIZED and answer.code == 401


def test_invalid_params_are_rejected(sim):
    answer = make_client(sim.url).create("add-instrumental", {**PARAMS, "styleWeight": 0.123},
                                         CALLBACK)
    assert answer.outcome is Outcome.REJECTED and answer.code == 400


def test_timeout_after_accept_is_uncertain(sim, wait):
    sim.set_knobs(accept_timeout_rate=1.0, accept_timeout_sleep_s=2.0)
    answer = make_client(sim.url, read_timeout=0.5).create("add-instrumental", PARAMS, CALLBACK)
    assert answer.outcome is Outcome.UNCERTAIN
    # the provider did create (and charge) the task: the simulator may count it a moment late
    wait(lambda: sim.stats()["accepted"] == 1, what="the timed-out call counted as accepted")


def test_dropped_connection_after_accept_is_uncertain(sim):
    sim.set_knobs(drop_rate=1.0, drop_after_accept=True)
    answer = make_client(sim.url).create("add-instrumental", PARAMS, CALLBACK)
    assert answer.outcome is Outcome.UNCERTAIN
    assert sim.stats()["dropped"] == 1


def test_refused_connection_is_transient():
    client = make_client(f"http://127.0.0.1:{free_port()}")
    answer = client.create("add-instrumental", PARAMS, CALLBACK)
    assert answer.outcome is Outcome.TRANSIENT and answer.code is None


def test_client_never_retries_a_post(sim):
    sim.set_knobs(server_error_rate=1.0)
    make_client(sim.url).create("add-instrumental", PARAMS, CALLBACK)
    assert sim.stats()["server_errors"] == 1


@pytest.mark.parametrize(("status", "body", "outcome", "code"), [
    (200, {"code": 429, "msg": "slow down"}, Outcome.THROTTLED, 429),  # kie: 429 in a 200 body
    (429, None, Outcome.THROTTLED, 429),  # plain HTTP 429, no envelope
    (200, {"code": 200, "data": {"taskId": "abc"}}, Outcome.ACCEPTED, 200),
    (200, {"code": 200, "data": None}, Outcome.UNCERTAIN, 200),  # accepted, but which task?
    (200, "<html>", Outcome.UNCERTAIN, None),
    (503, {"code": 455, "msg": "maintenance"}, Outcome.MAINTENANCE, 455),  # body code wins
    (502, None, Outcome.TRANSIENT, 502),
])
def test_classify_body_first_then_status(status, body, outcome, code):
    client = make_client("http://127.0.0.1:1", profile="kie", key="k")
    answer = client.classify(status, body, expect_task_id=True)
    assert (answer.outcome, answer.code) == (outcome, code)


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(("method", "outcome"), [("POST", Outcome.UNCERTAIN),
                                                 ("GET", Outcome.TRANSIENT)])
def test_half_written_answer_after_send(method, outcome):
    """A server that reads the request and closes mid-answer: a POST may have landed."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"code\":")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", key="k")
    answer = (client.create("add-instrumental", PARAMS, CALLBACK) if method == "POST"
              else client.record_info("abc"))
    server.close()
    assert answer.outcome is outcome


def test_environment_is_read_once_proxies_honoured_netrc_ignored(sim, tmp_path, monkeypatch):
    """The proxy for the provider's URL comes from the environment at construction (NO_PROXY
    honoured); a ~/.netrc entry for the provider's host never replaces the bearer key (the
    simulator answers 401 to any other credential)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    client = make_client("https://provider.example")
    assert client.session.proxies.get("https") == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "provider.example")
    assert make_client("https://provider.example").session.proxies == {}

    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-key\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    answer = make_client(sim.url).create("add-instrumental", PARAMS, CALLBACK)
    assert answer.outcome is Outcome.ACCEPTED, answer

    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert make_client("https://provider.example").session.verify == str(bundle)
