"""Benchmark: peers on the same workload, counted at the simulator's side.

The provider's rule is 20 create calls in any 10 s (the simulator enforces it, answering code
430 in an HTTP 200 over it, the sunoapi way). Each peer is a small real app under
tests/bench/peers/, written the way a user of its library would to respect that rule, and run
as real worker processes (2, then 4; one process each doing calls: ``celery worker -c 1``,
``dramatiq --processes 1 --threads 1``, backbeat's Procfile worker with ``--concurrency 1``),
against the bench's Redis (one database per peer, backbeat on database 0 with its prefix):

- Celery's own ``rate_limit="2/s"`` on the task (per worker instance, not fleet-wide);
- ``limits`` (``MovingWindowRateLimiter`` + ``RedisStorage``, 20 per 10 s, one shared key)
  inside a Celery task, ``self.retry(countdown=...)`` when refused;
- Dramatiq's ``WindowRateLimiter(RedisBackend, key, limit=20, window=10)``, retried on
  ``RateLimitExceeded`` by its Retries middleware;
- Dramatiq's ``ConcurrentRateLimiter`` (limit 1, a distributed mutex held 0.5 s per call), full
  mode only;
- backbeat: its real workers, beat and web (callbacks), the rule in BACKBEAT_SUBMIT_RATE.

The same backlog for every arm, all enqueued up front, each job's title its id. The simulator
answers every create after 200 ms. When a quarter of the backlog is accepted the simulator's
latency goes to 4 s for a moment and the first process whose call is accepted then (mid-call,
its answer not yet back) is SIGKILLed; the rest of the fleet finishes. From the ledger of the
arm (``/__calls``): calls, accepted, throttled, calls over the rule (arrivals whose trailing
10 s held more than 20 calls, themselves included), the most calls in any 10 s, utilisation
(jobs accepted in the first ceil(B/20) windows after the first call / the jobs the rule allows
in them, min(B, 20 x windows): the rule allows the whole backlog of B in that time), paid
duplicates (accepted calls beyond one per title) and jobs not done (titles never accepted by
the end of the arm).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    START_TIMEOUT_S,
    Fleet,
    Log,
    Section,
    Stack,
    over_limit,
    per_window,
    table,
    wait_for,
)
from plots import figure, png, sliding_counts
from redis import Redis

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.devstack.processes import Proc, free_port, venv_bin, wait_http, web_argv
from backbeat.simulator.ledger import max_in_window

GOAL = ("backbeat: 0 calls over the rule, 0 throttled, 0 paid twice after a worker kill, 0 jobs "
        "not done, utilisation >= 90%; peers measured on the same workload")
LIMIT, WINDOW_S = 20, 10.0
TARGET_UTIL = 0.90
#: the simulator's answer time, and the answer time while a kill is being set up
LATENCY_MS, SLOW_MS = 200, 4000
#: the kill comes after this many accepted calls (mid first window, while calls flow)
KILL_AT = LIMIT // 2
BENCH_DIR = Path(__file__).resolve().parent
#: marks every process this benchmark starts (checked in /proc/PID/environ before a kill)
MARK = "BACKBEAT_BENCH_PEERS_RUN"


# -- processes ----------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _ours(pid: int, token: str) -> bool:
    try:
        return f"{MARK}={token}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


@dataclass
class Arm:
    """One peer with N worker processes, started; what the driver needs of it."""

    enqueue: Callable[[list[str]], None]
    #: messages / jobs still to run (not counting those a dead node holds)
    pending: Callable[[], int]
    #: the pid of the process whose call for this title is in flight, if known
    inflight_pid: Callable[[str], int | None]
    #: what the peer's own state shows at the end (a line for the log)
    notes: Callable[[], str] = lambda: ""
    #: titles of the messages a dead worker holds (delivered again only after a timeout)
    dead_held: Callable[[], list[str]] = lambda: []


@dataclass
class Peer:
    key: str
    label: str
    kind: str  # celery | dramatiq | backbeat
    module: str = ""
    db: int = 0
    full_only: bool = False
    what: str = field(default="")


PEERS = [
    Peer("celery-rl", "Celery `rate_limit=\"2/s\"`", "celery", "peers.celery_ratelimit", 1),
    Peer("celery-limits", "Celery + `limits` moving window", "celery", "peers.celery_limits", 2),
    Peer("dramatiq-window", "Dramatiq `WindowRateLimiter`", "dramatiq", "peers.dramatiq_window",
         3),
    Peer("dramatiq-mutex", "Dramatiq `ConcurrentRateLimiter` (mutex, 0.5 s per call)",
         "dramatiq", "peers.dramatiq_mutex", 4, full_only=True),
    Peer("backbeat", "backbeat", "backbeat"),
]


def _peer_env(stack: Stack, peer: Peer, token: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BACKBEAT_", "PEER_"))}
    return {**base, MARK: token,
            "PEER_BROKER_URL": f"redis://127.0.0.1:{stack.redis_port}/{peer.db}",
            "PEER_BASE_URL": stack.sim.url, "PEER_API_KEY": stack.api_key,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR),
                                                        os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1"}


@contextmanager
def _procs(specs: list[tuple[str, list[str], str]], env: dict[str, str],
           log_dir: Path) -> Iterator[list[Proc]]:
    """Start (name, argv, ready log line) processes; TERM them all, 3 s, then KILL."""
    procs: list[Proc] = []
    try:
        for name, argv, _ in specs:
            procs.append(Proc.start(name, argv, env, log_dir))
        for proc, (_, _, needle) in zip(procs, specs, strict=True):
            proc.wait_for_log(needle, START_TIMEOUT_S)
        yield procs
    finally:
        for proc in procs:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(p.alive() for p in procs):
            time.sleep(0.1)
        for proc in procs:
            proc.stop(timeout_s=0.5)


@contextmanager
def _celery_arm(stack: Stack, peer: Peer, n: int, log_dir: Path,
                token: str) -> Iterator[Arm]:
    from celery import Celery

    env = _peer_env(stack, peer, token)
    redis = Redis(port=stack.redis_port, db=peer.db, decode_responses=True)
    redis.flushdb()
    specs = [(f"{peer.key}{i}", [venv_bin("celery"), "-A", peer.module, "worker", "-c", "1",
                                 "-P", "prefork", "--prefetch-multiplier", "1", "-Q", "peer",
                                 "-n", f"{peer.key}{i}@%h", "--without-mingle",
                                 "--without-gossip", "-l", "INFO"], "ready.")
             for i in range(n)]
    client = Celery("bench-producer", broker=env["PEER_BROKER_URL"])
    client.conf.update(task_serializer="json", accept_content=["json"],
                       broker_connection_retry_on_startup=True)

    def enqueue(titles: list[str]) -> None:
        with client.producer_or_acquire() as producer:
            for title in titles:
                client.send_task("peer.generate", args=[title], queue="peer",
                                 producer=producer)

    def pending() -> int:
        lists = sum(redis.llen(k) for k in redis.scan_iter("peer*", count=1000)
                    if redis.type(k) == "list")
        return lists + redis.hlen("unacked")

    def inflight_pid(title: str) -> int | None:
        pid = redis.hget("peer:inflight", title)
        return int(pid) if pid else None

    try:
        with _procs(specs, env, log_dir):
            yield Arm(enqueue, pending, inflight_pid,
                      lambda: f"broker: {pending()} message(s) queued or unacked")
    finally:
        client.close()
        redis.flushdb()
        redis.close()


@contextmanager
def _dramatiq_arm(stack: Stack, peer: Peer, n: int, log_dir: Path,
                  token: str) -> Iterator[Arm]:
    from dramatiq import Message
    from dramatiq.brokers.redis import RedisBroker

    env = _peer_env(stack, peer, token)
    redis = Redis(port=stack.redis_port, db=peer.db, decode_responses=True)
    redis.flushdb()
    specs = [(f"{peer.key}{i}", [venv_bin("dramatiq"), peer.module, "--processes", "1",
                                 "--threads", "1"], "Worker process is ready for action.")
             for i in range(n)]
    broker = RedisBroker(url=env["PEER_BROKER_URL"])
    broker.declare_queue("default")

    def enqueue(titles: list[str]) -> None:
        for title in titles:
            broker.enqueue(Message(queue_name="default", actor_name="generate", args=(title,),
                                   kwargs={}, options={}))

    def dead_held() -> list[str]:
        """Titles of the messages in the ack sets of workers without a heartbeat for 5 s
        (dead nodes): Dramatiq requeues them after its heartbeat timeout (60 s)."""
        now_ms = time.time() * 1000
        stale = {w for w, beat in redis.zrange("dramatiq:__heartbeats__", 0, -1, withscores=True)
                 if beat < now_ms - 5000}
        titles = []
        for key in redis.scan_iter("dramatiq:__acks__.*", count=1000):
            worker, queue = key[len("dramatiq:__acks__."):].split(".", 1)
            if worker in stale:
                for message_id in redis.smembers(key):
                    data = redis.hget(f"dramatiq:{queue}.msgs", message_id)
                    titles.append(json.loads(data)["args"][0] if data else "?")
        return titles

    def total() -> int:
        return redis.hlen("dramatiq:default.msgs") + redis.hlen("dramatiq:default.DQ.msgs")

    def inflight_pid(title: str) -> int | None:
        pid = redis.hget("peer:inflight", title)
        return int(pid) if pid else None

    try:
        with _procs(specs, env, log_dir):
            yield Arm(enqueue, lambda: total() - len(dead_held()), inflight_pid,
                      lambda: f"broker: {total()} message(s) not acked, of them held by a dead "
                              f"worker (requeued after its 60 s heartbeat timeout): "
                              f"{dead_held()}", dead_held)
    finally:
        broker.close()
        redis.flushdb()
        redis.close()


@contextmanager
def _backbeat_arm(stack: Stack, peer: Peer, n: int, log_dir: Path,
                  token: str) -> Iterator[Arm]:
    prefix = f"bp{n}"
    stack.clear_prefix(prefix)
    web_port = free_port()
    env = stack.env(prefix, BACKBEAT_SUBMIT_RATE=f"{LIMIT}/{WINDOW_S:g}s",
                    BACKBEAT_CALLBACK_BASE_URL=f"http://127.0.0.1:{web_port}")
    env[MARK] = token
    client = Client(Settings.from_env(env))
    titles_to_job: dict[str, str] = {}
    redis = stack.redis
    fleet = Fleet(env, log_dir, n, 1)
    web = Proc.start("web", web_argv(web_port), env, log_dir)
    try:
        wait_http(f"http://127.0.0.1:{web_port}/healthz", START_TIMEOUT_S)
        with fleet:
            def enqueue(titles: list[str]) -> None:
                for title in titles:
                    job = client.enqueue("add-instrumental", {
                        "uploadUrl": "https://example.com/v.mp3", "title": title,
                        "tags": "rock", "negativeTags": "metal"})
                    titles_to_job[title] = job["id"]

            def pending() -> int:
                return sum(redis.zcard(f"{prefix}:state:{s}") for s in ("queued", "submitting"))

            def inflight_pid(title: str) -> int | None:
                holder = redis.hget(f"{prefix}:lease-holders", titles_to_job.get(title, ""))
                if not holder:
                    return None
                node = holder.split(" ", 1)[0].split("@", 1)[0]
                for proc in fleet.procs:
                    if f"-n {node}@" in " ".join(proc.popen.args):
                        kids = _children(proc.popen.pid)
                        return kids[0] if len(kids) == 1 else None
                return None

            def notes() -> str:
                states = Counter()
                for job_id in titles_to_job.values():
                    states[client.get(job_id)["state"]] += 1
                dups = redis.get(f"{prefix}:metrics:duplicate_upstream_tasks") or 0
                return (f"backbeat: states {dict(sorted(states.items()))}; duplicates it "
                        f"recorded {dups}")

            yield Arm(enqueue, pending, inflight_pid, notes)
    finally:
        web.stop()
        stack.clear_prefix(prefix)


ARMS = {"celery": _celery_arm, "dramatiq": _dramatiq_arm, "backbeat": _backbeat_arm}


# -- one arm ------------------------------------------------------------------------------------

def run_arm(stack: Stack, peer: Peer, n: int, backlog: int, budget_s: float, token: str,
            log: Log) -> dict[str, Any]:
    tag = f"{peer.key}-{n}p"
    titles = [f"{tag}-{i}" for i in range(backlog)]
    stack.sim.reset(latency_ms=LATENCY_MS, callbacks_enabled=peer.kind == "backbeat")
    log_dir = Path(stack.run_dir) / "peers" / tag
    kill: dict[str, Any] = {"done": False}
    started = time.monotonic()
    with ARMS[peer.kind](stack, peer, n, log_dir, token) as arm:
        ready_s = time.monotonic() - started
        arm.enqueue(titles)
        wait_for(lambda: stack.sim.stats()["calls_total"] > 0, 60, f"{tag}: a first call")
        t0 = stack.sim.calls()[0]["t"]
        deadline = t0 + budget_s

        def accepted_titles() -> Counter:
            return Counter(c["title"] for c in stack.sim.calls() if c["outcome"] == "accepted")

        # the kill, mid first window while calls flow: slow answers, then SIGKILL the first
        # process whose call is accepted then
        while time.monotonic() < deadline and sum(accepted_titles().values()) < KILL_AT:
            time.sleep(0.05)
        switch = time.monotonic()
        stack.sim.set_knobs(latency_ms=SLOW_MS)
        try:
            while time.monotonic() < min(deadline, switch + 15) and not kill["done"]:
                for call in stack.sim.calls():
                    if call["outcome"] != "accepted" or call["t"] <= switch:
                        continue
                    pid = arm.inflight_pid(call["title"])
                    if pid and _ours(pid, token):
                        os.kill(pid, signal.SIGKILL)
                        kill.update(done=True, pid=pid, title=call["title"],
                                    after_s=time.monotonic() - t0)
                        break
                time.sleep(0.05)
        finally:
            stack.sim.set_knobs(latency_ms=LATENCY_MS)
        # the rest: until nothing is left to run by a live worker (twice in a row, 0.5 s
        # apart), or the deadline
        idle = 0
        while time.monotonic() < deadline and idle < 2:
            idle = idle + 1 if arm.pending() == 0 else 0
            time.sleep(0.5)
        finished = time.monotonic()
        calls, stats = stack.sim.calls(), stack.sim.stats()
        notes, held = arm.notes(), arm.dead_held()
    r = measure(peer, n, backlog, calls, stats, t0, finished, kill, ready_s, notes)
    r["arm_s"] = time.monotonic() - started
    done = {c["title"] for c in calls if c["outcome"] == "accepted"}
    # a held message whose job was accepted (the killed call) will be paid again when the
    # broker delivers it again; one whose job was not is a job waiting for that
    r["held_paid_again"] = sum(1 for t in held if t in done)
    r["held_waiting"] = sum(1 for t in held if t not in done)
    return r


def measure(peer: Peer, n: int, backlog: int, calls: list[dict[str, Any]],
            stats: dict[str, Any], t0: float, finished: float, kill: dict[str, Any],
            ready_s: float, notes: str) -> dict[str, Any]:
    times = [c["t"] for c in calls]
    accepted = [c for c in calls if c["outcome"] == "accepted"]
    per_title = Counter(c["title"] for c in accepted)
    windows, capacity = _rule_time(backlog)
    first_accept: dict[str, float] = {}
    for c in accepted:
        first_accept.setdefault(c["title"], c["t"])
    # jobs per window (a duplicate takes a place in the provider's window but does no job)
    in_rule_time = per_window(list(first_accept.values()), t0, WINDOW_S, windows)
    last_new = max((c["t"] for c in accepted), default=t0)
    return {
        "peer": peer, "n": n, "calls": len(calls), "accepted": len(accepted),
        "throttled": sum(1 for c in calls if c["outcome"] == "throttled"),
        "sim_throttled": stats["throttled"],
        "over": over_limit(times, WINDOW_S, LIMIT), "worst": max_in_window(times, WINDOW_S),
        "util": sum(in_rule_time) / capacity, "per_window": in_rule_time,
        "dups": sum(v - 1 for v in per_title.values() if v > 1),
        "not_done": backlog - len(per_title), "kill": kill, "times": times, "t0": t0,
        "t_end": max(finished, last_new), "makespan": last_new - t0, "ready_s": ready_s,
        "notes": notes, "other": {k: v for k, v in Counter(
            c["outcome"] for c in calls).items() if k not in ("accepted", "throttled")},
    }


def _rule_time(backlog: int) -> tuple[int, int]:
    """The windows the rule needs for the backlog (from the first call) and the jobs it allows
    in them."""
    windows = -(-backlog // LIMIT)
    return windows, min(backlog, LIMIT * windows)


# -- the section --------------------------------------------------------------------------------

def run(stack: Stack, quick: bool, log: Log) -> Section:
    backlog, budget_s = (30, 35.0) if quick else (80, 75.0)
    peers = [p for p in PEERS if not (quick and p.full_only)]
    token = secrets.token_hex(8)
    log(f"peers: simulator rule {LIMIT} per {WINDOW_S:g} s (code 430 over it), answers after "
        f"{LATENCY_MS} ms; backlog {backlog} jobs enqueued up front; 2 and 4 worker processes; "
        f"SIGKILL mid-call after {KILL_AT} accepted calls; each arm ends when no live worker "
        f"has anything left to run, or {budget_s:g} s after its first call")
    results = []
    for n in (2, 4):
        for peer in peers:
            r = run_arm(stack, peer, n, backlog, budget_s, token, log)
            results.append(r)
            k = r["kill"]
            log(f"  {peer.key} x {n}: {r['calls']} calls, {r['accepted']} accepted, "
                f"{r['throttled']} throttled, over the rule {r['over']}, worst window "
                f"{r['worst']}, jobs accepted per window {r['per_window']} -> {r['util']:.0%}; "
                f"last job accepted at +{r['makespan']:.1f} s; kill "
                + (f"pid {k['pid']} ({k['title']}) at +{k['after_s']:.1f} s" if k["done"]
                   else "NOT DONE (no call in flight found)")
                + f"; paid twice {_dups(r)}, not done {_not_done(r)}"
                + (f"; other answers {r['other']}" if r["other"] else "")
                + f"; workers ready in {r['ready_s']:.1f} s, arm {r['arm_s']:.0f} s")
            if r["notes"]:
                log(f"    {r['notes']}")
    rows = [[r["peer"].label, r["n"], r["calls"], r["accepted"], r["throttled"], r["over"],
             f"{r['worst']} / {LIMIT}", f"{r['util']:.0%}", _dups(r), _not_done(r),
             f"{r['makespan']:.1f}"] for r in results]
    ours = [r for r in results if r["peer"].kind == "backbeat"]
    met = all(r["over"] == 0 and r["throttled"] == 0 and r["dups"] == 0 and r["not_done"] == 0
              and r["util"] >= TARGET_UTIL and r["kill"]["done"] for r in ours)
    images = {"bench-peers-windows.png": _plot([r for r in results if r["n"] == 4])}
    windows, capacity = _rule_time(backlog)
    body = "\n".join([
        f"Provider rule at the simulator: **{LIMIT} create calls in any {WINDOW_S:g} s**, "
        f"answers after {LATENCY_MS} ms, code 430 in an HTTP 200 over the rule (sunoapi's "
        f"\"call frequency too high\"). Backlog: **{backlog} jobs**, all enqueued up front, "
        "each titled with its own id. Each arm: one peer with 2 or 4 worker processes, each "
        f"making one call at a time. After {KILL_AT} accepted calls the simulator's answers "
        f"slow to {SLOW_MS / 1000:g} s and the first worker process whose call it accepts then "
        "is **SIGKILLed mid-call** (the call paid, its answer not yet back); the rest of the "
        "fleet finishes. Every figure is counted from the simulator's ledger of the arm. An "
        "arm ends when no live worker has anything left to run, or "
        f"{budget_s:g} s after its first call.",
        "",
        table(["peer", "processes", "calls", "accepted", "throttled (430)",
               "calls over the rule", f"most calls in any {WINDOW_S:g} s",
               f"utilisation (first {windows} windows)",
               "paid twice after the kill", "jobs not done", "last job accepted (s)"], rows),
        "",
        f"![calls in the sliding {WINDOW_S:g} s window over time, 4 processes, each peer "
        "against the rule](bench-peers-windows.png)",
        "",
        f"- goal ({GOAL}): **{'met' if met else 'MISSED'}**, judged on backbeat's rows only; "
        "the peers' rows are measurements.",
        "- calls over the rule: create calls (any answer) arriving when the trailing "
        f"{WINDOW_S:g} s already held {LIMIT} calls (exact, over every arrival of the arm: "
        "`common.over_limit`); most calls in any window: the same count's maximum, itself "
        "included. Throttled: the simulator's 430 answers (nothing charged, but each one a "
        "call the provider holds against the account).",
        f"- utilisation: jobs accepted (first accepted call of each title) in the first "
        f"{windows} windows of {WINDOW_S:g} s after the arm's first call / the {capacity} jobs "
        "the rule allows in them. A paid duplicate takes a place in the window but does no "
        f"job. The kill and its {SLOW_MS / 1000:g} s answers fall inside that time for every "
        "peer." + (" With the quick run's short backlog every peer reaches 100%: the last "
                   "column shows the difference." if quick else ""),
        "- paid twice: accepted calls beyond one per title (the simulator charges each). "
        "\"+1 when the dead worker's message is requeued\": the killed call's message is "
        "still unacknowledged in the dead Dramatiq worker's set; Dramatiq's Redis broker "
        "requeues it once the worker has missed its heartbeat for 60 s (at a maintenance "
        "pass), and the actor then calls again for a job already paid. Jobs not done: titles "
        "never accepted by the end of the arm (\"held by the dead worker\": waiting for the "
        "same requeue).",
        "- Celery peers (`celery worker -c 1 --prefetch-multiplier 1` per process): "
        "`acks_late` + `task_reject_on_worker_lost`, the at-least-once settings a user picks "
        "for jobs that must not be lost (`acks_late` alone acknowledges a killed pool "
        "process's message: the job is lost). `rate_limit=\"2/s\"` is the rule divided out, "
        "enforced per worker instance, so N processes may call 2N per second; a 430 is "
        "retried (`autoretry_for`, exponential backoff with jitter, at most 30 s). `limits`: "
        "`MovingWindowRateLimiter(RedisStorage)`, \"20 per 10 seconds\" on one key shared by "
        "the fleet, `hit()` before each call; refused or throttled, `self.retry(countdown=...)` "
        "until the window's oldest entry leaves it (`get_window_stats`), plus up to 0.5 s of "
        "jitter.",
        "- Dramatiq peers (`dramatiq --processes 1 --threads 1` per process, Redis broker): "
        "`WindowRateLimiter(RedisBackend, key, limit=20, window=10)`, `with "
        "LIMITER.acquire():` around the call as its docs show; `RateLimitExceeded` or a 430 "
        "is retried by the Retries middleware, backoff tuned to the rule (1 s to 10 s; the "
        "defaults are 15 s to 7 days). Its window is whole-second buckets (`key@<second>`, "
        "the last 10 summed), so calls 9 to 10 s apart can share a provider window. "
        + ("The mutex variant: `ConcurrentRateLimiter` limit 1 held at least 0.5 s per call "
           "(a start every 10 s / 20), `ttl` 35 s (the call's own timeouts; the default is "
           "900 s). " if not quick else "The `ConcurrentRateLimiter` variant runs in the full "
           "mode only. ")
        + "A Dramatiq worker holds the retries it fetched from the delay queue until they "
        "are due, so a dead worker's backoffs wait for the requeue too.",
        "- backbeat: its own workers as the Procfile runs them (`common.Fleet`, concurrency "
        "1), beat, and web to receive the provider's callbacks (callbacks are on for "
        "backbeat's arms only; the peers have no use for them), "
        f"`BACKBEAT_SUBMIT_RATE={LIMIT}/{WINDOW_S:g}s`, the bench's settings otherwise "
        "(`common.Stack.env`). It paces its calls through the window rather than bursting.",
        "- the kill hits the process making the call, not its node's main process. Celery's "
        "main process requeues the message at once and forks a new pool process: another "
        "worker calls again, paid twice. A Dramatiq worker process's death stops its whole "
        "`dramatiq` command (the other commands go on), and its messages wait for the "
        "heartbeat timeout. backbeat's redelivery finds the job mid-call and marks it "
        "uncertain instead of calling again; the provider's callback adopts the task.",
    ])
    return Section("peers", "Peers on the same workload", GOAL, body, met=met, images=images)


def _dups(r: dict[str, Any]) -> str:
    out = str(r["dups"])
    if r["held_paid_again"]:
        out += f" (+{r['held_paid_again']} when the dead worker's message is requeued)"
    return out if r["kill"]["done"] else f"{out} (no kill)"


def _not_done(r: dict[str, Any]) -> str:
    out = str(r["not_done"])
    if r["held_waiting"]:
        out += f" ({r['held_waiting']} held by the dead worker)"
    return out


def _plot(results: list[dict[str, Any]]) -> bytes:
    """Two panels on one time axis: every curve at full scale, then the band around the rule."""
    title = (f"Create calls in the sliding {WINDOW_S:g} s window (any answer), 4 worker "
             "processes")
    fig, first = figure(title, width=12.0, height=7.0)
    first.remove()
    fig.suptitle(title)
    axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.4]})
    end = 0.0
    for r in results:
        t1 = r["t_end"] + 0.5
        xs, ys = sliding_counts(r["times"], WINDOW_S, r["t0"], t1)
        for ax in axes:
            ax.plot(xs, ys, label=r["peer"].label.replace("`", ""), linewidth=1.4,
                    drawstyle="steps-post")
        end = max(end, t1 - r["t0"])
    for ax in axes:
        ax.axhline(LIMIT, color="black", linestyle="--", linewidth=1,
                   label=f"provider rule ({LIMIT} per {WINDOW_S:g} s)")
        ax.grid(True, alpha=0.3)
        ax.set_ylabel(f"calls in the last {WINDOW_S:g} s")
    axes[1].set_ylim(0, LIMIT + 6)
    axes[1].set_title(f"zoom: 0 to {LIMIT + 6} calls", fontsize=9)
    axes[1].set_xlim(0, end)
    axes[1].set_xlabel("seconds since the arm's first create call")
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png(fig)

