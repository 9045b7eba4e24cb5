"""Webhook targets (notify_url) reach public addresses only: literals, names that resolve to
private ones (at enqueue and at delivery, through a resolver the test controls), DNS that
changes between the check and the connection, and redirects (never followed)."""

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from marshmallow import ValidationError

from backbeat.config.settings import Settings
from backbeat.workers import webhooks
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState

REFUSED_LITERALS = [
    "http://127.0.0.1/x", "http://127.9.9.9/", "http://10.0.0.1/", "http://172.16.0.1/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://0/", "http://2130706433/", "http://0x7f.1/",
    "http://017700000001/", "http://localhost:8000/", "http://api.localhost/",
    "http://[::1]/", "http://[::]/", "http://[fc00::1]/", "http://[fd12:3456::1]/",
    "http://[fe80::1]/", "http://[fe80::1%25eth0]/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/", "http://[::127.0.0.1]/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::1]/", "http://[ff02::1]/", "http://224.0.0.1/",
]
PUBLIC_LITERALS = ["https://93.184.216.34/hook", "http://[2606:2800:220:1::248]/hook"]


@pytest.mark.parametrize("url", REFUSED_LITERALS)
def test_private_literals_are_refused_at_enqueue(url):
    with pytest.raises(ValidationError) as err:
        webhooks.check_notify_url(url, allow_private=False)
    assert err.value.messages == {"notify_url": [webhooks.PRIVATE]}
    webhooks.check_notify_url(url, allow_private=True)  # BACKBEAT_WEBHOOK_ALLOW_PRIVATE


@pytest.mark.parametrize("url", PUBLIC_LITERALS)
def test_public_literals_are_accepted(url):
    webhooks.check_notify_url(url, allow_private=False)


class Resolver:
    """A socket.getaddrinfo stand-in: names -> lists of addresses, changed at will; counts
    lookups per name. Unknown names raise gaierror; IP literals resolve to themselves."""

    def __init__(self, monkeypatch, table):
        self.table, self.lookups, self.real = dict(table), {}, socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        self.lookups[host] = self.lookups.get(host, 0) + 1
        answer = self.table.get(host)
        if answer is None:
            try:
                import ipaddress
                ipaddress.ip_address(host)
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "unknown name") from None
            return self.real(host, port, family, type, proto, flags)
        if callable(answer):
            answer = answer()
        out = []
        for addr in answer:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port, 0, 0) if fam == socket.AF_INET6 else (addr, port)
            out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["93.184.216.34", "10.1.2.3"],
                                       ["::1"], ["169.254.169.254"], ["::ffff:10.0.0.1"],
                                       ["fd00::5"]])
def test_names_resolving_to_private_addresses_are_refused_at_enqueue(monkeypatch, addresses):
    Resolver(monkeypatch, {"hooks.example.com": addresses})
    with pytest.raises(ValidationError):
        webhooks.check_notify_url("https://hooks.example.com/x", allow_private=False)
    webhooks.check_notify_url("https://hooks.example.com/x", allow_private=True)


def test_public_and_not_yet_resolvable_names_are_accepted_at_enqueue(monkeypatch):
    resolver = Resolver(monkeypatch, {"hooks.example.com": ["93.184.216.34"]})
    webhooks.check_notify_url("https://hooks.example.com/x", allow_private=False)
    webhooks.check_notify_url("https://not-yet.example.com/x", allow_private=False)
    assert resolver.lookups == {"hooks.example.com": 1, "not-yet.example.com": 1}


class Receiver:
    """A loopback HTTP receiver answering ``status`` (with ``location`` for redirects)."""

    def __init__(self, status=200, location=""):
        self.hits = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.hits.append(self.path)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(**kw):
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def runtime(allow_private):
    return Runtime(Settings.from_env({**os.environ, "BACKBEAT_WEBHOOK_ALLOW_PRIVATE":
                                      "true" if allow_private else "false"}))


def ended_job(rt, job_id, url):
    rt.store.create(job_id, "add-vocals", {}, notify_url=url)
    rt.store.transition(job_id, JobState.CANCELLED, "cancelled", require_from=JobState.QUEUED)


def test_delivery_refuses_a_name_that_now_resolves_to_a_private_address(redis, monkeypatch,
                                                                       receivers):
    """Given a name public at enqueue that resolves to loopback at delivery, expect no request
    to reach the receiver listening there, and the refusal on the job."""
    hook = receivers()
    resolver = Resolver(monkeypatch, {"hooks.example.com": ["93.184.216.34"]})
    url = f"http://hooks.example.com:{hook.port}/hook"
    webhooks.check_notify_url(url, allow_private=False)
    rt = runtime(False)
    ended_job(rt, "w1", url)
    resolver.table["hooks.example.com"] = ["127.0.0.1"]
    assert webhooks.deliver_one(rt, "w1") is False
    assert hook.hits == []
    notify = rt.store.get("w1").to_public()["notify"]
    assert notify["state"] == "retrying" and notify["error"] == webhooks.PRIVATE


def test_delivery_refuses_dns_that_changes_between_the_check_and_the_connection(
        redis, monkeypatch, receivers):
    """Given DNS that answers public to the check and loopback to the next lookup (rebinding),
    expect the connection refused before any byte reaches the receiver."""
    hook = receivers()
    answers = iter([["93.184.216.34"]])
    Resolver(monkeypatch, {"rebind.example.com": lambda: next(answers, ["127.0.0.1"])})
    rt = runtime(False)
    ended_job(rt, "w2", f"http://rebind.example.com:{hook.port}/hook")
    assert webhooks.deliver_one(rt, "w2") is False
    assert hook.hits == []
    assert rt.store.get("w2").to_public()["notify"]["error"] == webhooks.PRIVATE


def test_delivery_of_an_unresolvable_name_is_retried(redis, monkeypatch):
    Resolver(monkeypatch, {})
    rt = runtime(False)
    ended_job(rt, "w3", "https://gone.example.com/hook")
    assert webhooks.deliver_one(rt, "w3") is False
    assert rt.store.get("w3").to_public()["notify"]["error"] == "Host does not resolve."


def test_redirects_are_never_followed(redis, receivers):
    """Given a receiver answering 302 to the metadata-like endpoint of another loopback server
    (private targets allowed, so only the redirect rule stands in the way), expect the 302 to
    count as a failed attempt and the redirect target never reached."""
    target = receivers()
    hook = receivers(status=302,
                     location=f"http://127.0.0.1:{target.port}/latest/meta-data/")
    rt = runtime(True)
    ended_job(rt, "w4", f"http://127.0.0.1:{hook.port}/hook")
    assert webhooks.deliver_one(rt, "w4") is False
    assert hook.hits == ["/hook"] and target.hits == []
    notify = rt.store.get("w4").to_public()["notify"]
    assert notify["state"] == "retrying" and notify["error"] == "HTTP 302"


def test_allow_private_delivers_to_loopback(redis, receivers):
    hook = receivers()
    rt = runtime(True)
    ended_job(rt, "w5", f"http://127.0.0.1:{hook.port}/hook")
    assert webhooks.deliver_one(rt, "w5") is True and hook.hits == ["/hook"]
