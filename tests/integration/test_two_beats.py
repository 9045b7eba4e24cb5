"""Two beats (a second ``beat`` by mistake, or two during a deploy) never double anything.

Each beat-driven cycle (reconcile, pump, housekeeping, webhook delivery) runs from several
threads released together, each with its own Runtime, as the tasks of three beats would run on a
fleet. The race is made seconds wide, never milliseconds: provider or receiver latency, or a slow
broker, keeps every cycle busy long enough that, without its lease, the others would take the
same jobs for sure. Every count is taken at the far side: the simulator's poll ledger, the
broker's lists, a webhook receiver. The last test runs two real ``celery beat`` processes.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from backbeat.config.settings import Settings
from backbeat.devstack.processes import Proc, beat_argv
from backbeat.workers import housekeeping, pump, reconcile, webhooks
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState

pytestmark = pytest.mark.integration

#: beats racing in each test
BEATS = 3
#: bound for every wait and every racing cycle (the machine is shared and noisy)
WAIT_S = 90.0
#: the simulator for jobs made in bulk: no create window to speak of, a task timeline that never
#: moves during a test (tasks stay PENDING), no callbacks
FROZEN = {"rate_limit": 10_000, "callbacks_enabled": False, "text_after_s": 600,
          "first_after_s": 600, "complete_after_s": 600}


def vocals(title: str) -> dict[str, str]:
    return {"uploadUrl": "https://example.com/b.mp3", "title": title, "prompt": "la",
            "style": "Jazz", "negativeTags": "none"}


@pytest.fixture
def deployment(redis, sim) -> Callable[..., Settings]:
    """``deployment(prefix, **env)``: the settings of one deployment under its own key prefix
    (its keys removed first)."""

    def make(prefix: str, **overrides: str) -> Settings:
        for key in redis.scan_iter(f"{prefix}:*", count=1000):
            redis.delete(key)
        return Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": prefix, **overrides})

    return make


def race(settings: Settings, *cycles: Callable[[Runtime], Any]) -> list[Any]:
    """Run each ``cycle(rt)`` in its own thread, all released together, each with its own
    Runtime (its own provider session, store and limiters); returns what each returned."""
    barrier = threading.Barrier(len(cycles))

    def one(cycle: Callable[[Runtime], Any]) -> Any:
        rt = Runtime(settings)
        barrier.wait(timeout=WAIT_S)
        return cycle(rt)

    with ThreadPoolExecutor(len(cycles)) as pool:
        futures = [pool.submit(one, cycle) for cycle in cycles]
        return [f.result(timeout=2 * WAIT_S) for f in futures]


def ticking(done: Callable[[], bool],
            cycle: Callable[[Runtime], Any]) -> Callable[[Runtime], list[Any]]:
    """A beat that runs ``cycle`` every 0.1 s until ``done()`` (bounded); returns what each
    of its cycles returned."""

    def beat(rt: Runtime) -> list[Any]:
        deadline, results = time.monotonic() + WAIT_S, []
        while not done() and time.monotonic() < deadline:
            results.append(cycle(rt))
            time.sleep(0.1)
        return results

    return beat


def job_ids(count: int, tag: str) -> list[str]:
    return [f"{tag}-{n:03d}" for n in range(count)]


# -- reconcile ---------------------------------------------------------------------------------


def submitted(rt: Runtime, count: int, tag: str) -> dict[str, str]:
    """``count`` jobs in ``submitted``, each with a real task at the simulator, all due for a
    poll now; returns job id -> upstream task id."""
    tasks = {}
    for job_id in job_ids(count, tag):
        rt.store.create(job_id, "add-vocals", vocals(job_id))
        rt.store.dispatched(job_id)
        answer = rt.provider.create("add-vocals", vocals(job_id), "http://127.0.0.1:9/cb")
        assert answer.task_id, answer
        rt.store.transition(job_id, JobState.SUBMITTING, "test")
        moved = rt.store.transition(job_id, JobState.SUBMITTED, "test", poll_delay_ms=0,
                                    fields={"upstream_task_id": answer.task_id})
        assert moved.applied
        tasks[job_id] = answer.task_id
    return tasks


def polls(sim: Any) -> Counter:
    """record-info calls the simulator received, per task id."""
    return Counter(p["taskId"] for p in requests.get(f"{sim.url}/__polls", timeout=10).json())


def test_racing_reconcilers_poll_each_due_job_once(deployment, sim):
    """Given 30 jobs due for a poll and a provider answering in 150 ms (one cycle over them all
    lasts 4.5 s), when three reconcile cycles start together, expect each job polled once."""
    sim.set_knobs(**FROZEN)
    settings = deployment("t2r", BACKBEAT_POLL_RATE="200/1s", BACKBEAT_POLL_MIN_DELAY="600",
                          BACKBEAT_POLL_MAX_DELAY="600")
    tasks = submitted(Runtime(settings), 30, "r")
    sim.set_knobs(latency_ms=150)
    reports = race(settings, *[reconcile.run_cycle] * BEATS)
    assert polls(sim) == Counter(tasks.values())
    assert sum(r.claimed for r in reports) == sum(r.polled for r in reports) == 30


def test_a_reconcile_cycle_longer_than_its_lease_never_shares_a_job(deployment, sim,
                                                                    monkeypatch):
    """Given 40 due jobs and a provider answering in 200 ms, a cycle over them all (8 s) lasts
    longer than the time it may start polls (CYCLE_LEASE_MS, 3 s here): when three beats tick,
    expect each cycle to hand back what it cannot start in time and each job polled once, never by a
    second beat while the first still holds it."""
    monkeypatch.setattr(reconcile, "CYCLE_LEASE_MS", 3000)
    monkeypatch.setattr(reconcile, "POLL_TOKEN_WAIT_S", 0.5)
    sim.set_knobs(**FROZEN)
    settings = deployment("t2l", BACKBEAT_POLL_RATE="200/1s", BACKBEAT_POLL_MIN_DELAY="600",
                          BACKBEAT_POLL_MAX_DELAY="600", BACKBEAT_CONNECT_TIMEOUT="1",
                          BACKBEAT_READ_TIMEOUT="5")
    tasks = submitted(Runtime(settings), 40, "l")
    sim.set_knobs(latency_ms=200)

    def all_polled() -> bool:
        return set(polls(sim)) >= set(tasks.values())

    reports = sum(race(settings, *[ticking(all_polled, reconcile.run_cycle)] * BEATS), [])
    assert all_polled()
    assert polls(sim) == Counter(tasks.values())
    assert sum(r.polled for r in reports) == 40
    # no cycle could poll them all within its 3 s: each handed the rest back
    assert max(r.polled for r in reports) < 40 and sum(r.deferred for r in reports) > 0


# -- pump --------------------------------------------------------------------------------------


def decode(raw: str) -> str:
    """The job id a ``backbeat.submit`` broker message carries."""
    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return args[0]


def take_messages(rt: Runtime) -> Counter:
    """Take every submit message from the broker (all priority lists of the queue), as workers
    would: returns their count per job id."""
    taken: Counter = Counter()
    for key in rt.redis.scan_iter(f"{rt.keys.prefix}:celery:submit*"):
        pipe = rt.redis.pipeline(transaction=True)
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raws, _ = pipe.execute()
        taken.update(decode(raw) for raw in raws)
    return taken


def parked(rt: Runtime, count: int, tag: str) -> list[str]:
    """``count`` queued jobs (their first message sent and lost), parked and due now."""
    ids = job_ids(count, tag)
    for job_id in ids:
        rt.store.create(job_id, "add-vocals", vocals(job_id))
        rt.store.dispatched(job_id)
        rt.store.park(job_id)
    return ids


@pytest.fixture
def slow_broker(monkeypatch) -> Callable[[Any], None]:
    """``slow_broker(module)``: that module's ``send_submit`` (one message) or ``send_submits``
    (a list, one round trip) takes 10 ms more per message (a busy broker), so one cycle's
    sends last seconds."""

    def slow(module: Any) -> None:
        name = "send_submits" if hasattr(module, "send_submits") else "send_submit"
        send = getattr(module, name)

        def slow_send(settings: Any, ids: Any, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.01 * (len(ids) if name == "send_submits" else 1))
            send(settings, ids, *args, **kwargs)

        monkeypatch.setattr(module, name, slow_send)

    return slow


def test_racing_pumps_wake_each_job_once_and_fill_the_queue_once(deployment, slow_broker):
    """Given 250 parked jobs, a submit bucket of 100 and a slow broker (one pump's sends last
    1 s), when three pumps start together, round after round (workers taking the messages in
    between), expect at most one bucket of messages per round and one message per job."""
    slow_broker(pump)
    settings = deployment("t2p", BACKBEAT_SUBMIT_RATE="100/10s")
    rt = Runtime(settings)
    ids = parked(rt, 250, "p")
    rounds, total = [], Counter()
    for _ in range(4):
        woken = sum(race(settings, *[pump.pump] * BEATS))
        taken = take_messages(rt)
        assert sum(taken.values()) == woken
        rounds.append(woken)
        total.update(taken)
    assert rounds == [100, 100, 50, 0]  # one bucket per round, then every job leased
    assert total == Counter(ids)


# -- housekeeping ------------------------------------------------------------------------------


def spy_transitions(rt: Runtime, seen: Counter, lock: threading.Lock) -> None:
    """Count this Runtime's transitions to ``expired`` per job, each 5 ms slower (a busy
    Redis), so one housekeeper's pass over the overdue jobs lasts seconds."""
    transition = rt.store.transition

    def spy(job_id: str, to: JobState, *args: Any, **kwargs: Any) -> Any:
        if to is JobState.EXPIRED:
            with lock:
                seen[job_id] += 1
            time.sleep(0.005)
        return transition(job_id, to, *args, **kwargs)

    rt.store.transition = spy


def test_racing_housekeepers_expire_each_overdue_job_once(deployment):
    """Given 300 jobs past their deadline, when three housekeeping runs start together (each
    transition 5 ms slower), expect each job taken by one housekeeper and expired once."""
    settings = deployment("t2e")
    rt = Runtime(settings)
    ids = job_ids(300, "e")
    for job_id in ids:
        rt.store.create(job_id, "add-vocals", vocals(job_id), deadline_ms=1)
        rt.store.dispatched(job_id)
    attempts: Counter = Counter()
    lock = threading.Lock()

    def housekeeper(runtime: Runtime) -> Any:
        spy_transitions(runtime, attempts, lock)
        return housekeeping.run(runtime)

    reports = race(settings, *[housekeeper] * BEATS)
    # the forward-only transition alone keeps each expiry single; the lease keeps the work
    # single: each overdue job taken by exactly one housekeeper
    assert attempts == Counter(ids)
    assert sum(r.expired for r in reports) == 300
    events = rt.redis.xrange(rt.keys.events, "-", "+")
    assert Counter(e["job"] for _, e in events if e["to"] == "expired") == Counter(ids)


def test_racing_housekeepers_resend_each_unsent_message_once(deployment, slow_broker):
    """Given 200 jobs whose producer died before sending their message (outbox past its grace)
    and a slow broker (one housekeeper's re-sends last 2 s), when three housekeeping runs start
    together, expect one message per job."""
    slow_broker(housekeeping)
    settings = deployment("t2o", BACKBEAT_OUTBOX_GRACE="0")
    rt = Runtime(settings)
    ids = job_ids(200, "o")
    for job_id in ids:
        rt.store.create(job_id, "add-vocals", vocals(job_id))
    reports = race(settings, *[housekeeping.run] * BEATS)
    assert take_messages(rt) == Counter(ids)
    assert sum(r.resent for r in reports) == 200
    assert rt.redis.zcard(rt.keys.outbox) == 0


def test_racing_housekeepers_and_pumps_rescue_each_stranded_job_once(deployment, slow_broker):
    """Given 200 queued jobs whose message was lost long ago (queued for longer than a
    visibility timeout and a minute), when three beats each run housekeeping then the pump,
    round after round (slow broker), expect every job rescued and sent exactly one message."""
    slow_broker(pump)
    settings = deployment("t2s", BACKBEAT_VISIBILITY_TIMEOUT="20",
                          BACKBEAT_SUBMIT_RATE="1000/10s")
    rt = Runtime(settings)
    ids = job_ids(200, "s")
    for job_id in ids:
        rt.store.create(job_id, "add-vocals", vocals(job_id))
        rt.store.dispatched(job_id)
    long_ago = rt.store.now_ms() - 200_000  # the rescue cutoff is 80 s ago here
    rt.redis.zadd(rt.keys.queued, dict.fromkeys(ids, long_ago))

    def beat(runtime: Runtime) -> int:
        rescued = housekeeping.run(runtime).rescued
        pump.pump(runtime)
        return rescued

    total, rescued = Counter(), 0
    for _ in range(3):
        rescued += sum(race(settings, *[beat] * BEATS))
        total.update(take_messages(rt))
    assert total == Counter(ids)
    assert rescued == 200


# -- webhooks ----------------------------------------------------------------------------------


class Receiver:
    """A loopback webhook receiver answering each POST after ``delay_s``; counts per job."""

    def __init__(self, delay_s: float) -> None:
        self.hits: Counter = Counter()
        lock, receiver = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(delay_s)
                with lock:
                    receiver.hits[body["job"]["id"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[[float], Receiver]]:
    made: list[Receiver] = []

    def make(delay_s: float) -> Receiver:
        made.append(Receiver(delay_s))
        return made[-1]

    yield make
    for r in made:
        r.close()


def ended_with_webhook(rt: Runtime, count: int, tag: str, url: str) -> list[str]:
    """``count`` jobs that ended (cancelled) with a ``notify_url``: each webhook due now."""
    ids = job_ids(count, tag)
    for job_id in ids:
        rt.store.create(job_id, "add-vocals", vocals(job_id), notify_url=url)
        rt.store.dispatched(job_id)
        assert rt.store.transition(job_id, JobState.CANCELLED, "test").applied
    return ids


def test_racing_deliveries_send_each_webhook_once(deployment, receiver):
    """Given 20 due webhooks and a receiver answering in 200 ms (one delivery cycle lasts 4 s),
    when three delivery cycles start together, expect each webhook delivered once."""
    hooks = receiver(0.2)
    settings = deployment("t2w", BACKBEAT_WEBHOOK_ALLOW_PRIVATE="1")
    rt = Runtime(settings)
    ids = ended_with_webhook(rt, 20, "w", hooks.url)
    assert sum(race(settings, *[webhooks.deliver_due] * BEATS)) == 20
    assert hooks.hits == Counter(ids)
    assert {rt.store.get(i).get("notify_state") for i in ids} == {"delivered"}


def test_a_delivery_cycle_longer_than_its_lease_never_shares_a_webhook(deployment, receiver,
                                                                       monkeypatch):
    """Given 30 due webhooks and a receiver answering in 200 ms, a cycle over them all (6 s)
    lasts longer than the time it may start deliveries (CYCLE_LEASE_MS, 2 s here): when three beats
    tick, expect each cycle to hand back the rest and every webhook delivered once."""
    monkeypatch.setattr(webhooks, "CYCLE_LEASE_MS", 2000)
    monkeypatch.setattr(webhooks, "TIMEOUT_S", 2.0)
    hooks = receiver(0.2)
    settings = deployment("t2x", BACKBEAT_WEBHOOK_ALLOW_PRIVATE="1")
    rt = Runtime(settings)
    ids = ended_with_webhook(rt, 30, "x", hooks.url)

    def all_delivered() -> bool:
        return set(hooks.hits) >= set(ids)

    attempted = sum(race(settings, *[ticking(all_delivered, webhooks.deliver_due)] * BEATS), [])
    assert all_delivered()
    assert hooks.hits == Counter(ids)
    assert sum(attempted) == 30
    assert max(attempted) < 30  # no cycle could deliver them all within its 2 s


# -- two real beat processes -------------------------------------------------------------------


def beat_ticks(proc: Proc, task: str) -> int:
    """How many ``task`` messages this beat process has sent."""
    return proc.log_text(own=True).count(f"Sending due task {task} ")


def test_two_beat_processes_poll_and_notify_each_job_once(fleet, sim, receiver, run_dir, wait):
    """Given a fleet with two real beats (each sending reconcile and notify every 0.5 s), 12
    jobs whose tasks are done and all due for a poll at once, a provider answering polls in
    300 ms and a receiver answering in 300 ms (so cycles from both beats overlap for seconds),
    expect each job polled once, succeeded and notified once, while both beats keep ticking."""
    hooks = receiver(0.3)
    sim.set_knobs(callbacks_enabled=False)  # tasks complete 0.9 s after acceptance
    f = fleet("t2b", workers=1, concurrency=4, BACKBEAT_POLL_MIN_DELAY="600",
              BACKBEAT_POLL_MAX_DELAY="600", BACKBEAT_POLL_RATE="200/1s",
              BACKBEAT_SUBMIT_BURST="12", BACKBEAT_WEBHOOK_ALLOW_PRIVATE="1")
    second = Proc.start("beat2", beat_argv(f.run_dir / "beat2-schedule"), f.env, f.run_dir)
    f.procs.append(second)
    second.wait_for_log("beat: Starting...", WAIT_S)
    ids = [f.client.enqueue("add-vocals", vocals(f"Two beats {n}"), notify_url=hooks.url)["id"]
           for n in range(12)]
    wait(lambda: all(f.client.get(i)["state"] == "submitted" for i in ids), what="submitted")
    tasks = {f.client.get(i)["upstream_task_id"] for i in ids}
    wait(lambda: sim.stats()["tasks"] == {"SUCCESS": 12}, what="every task done upstream")
    sim.set_knobs(latency_ms=300)
    rt = Runtime(f.settings)
    rt.redis.zadd(rt.keys.poll, dict.fromkeys(ids, 0), xx=True)
    assert [j["state"] for j in f.wait_all(ids)] == ["succeeded"] * 12
    wait(lambda: set(hooks.hits) >= set(ids), what="every webhook delivered")
    # both beats keep ticking for a while after: any late double would show
    marks = {p.name: (beat_ticks(p, "reconcile"), beat_ticks(p, "notify"))
             for p in (f.beat, second)}
    wait(lambda: all(beat_ticks(p, "reconcile") >= marks[p.name][0] + 4
                     and beat_ticks(p, "notify") >= marks[p.name][1] + 4
                     for p in (f.beat, second)), what="four more ticks of each beat")
    assert {t: n for t, n in polls(sim).items() if t in tasks} == dict.fromkeys(tasks, 1)
    assert hooks.hits == Counter(ids)
