"""Soak: a bounded mixed workload under random provider faults, worker kills and a Redis
restart, then an invariant check (``make soak``).

The run (``BENCH_SOAK_S`` seconds of load: default 600, 90 with ``--quick``):

- its own redis-server with AOF (``appendfsync everysec``), the web process (callbacks and the
  HTTP API), 3 worker nodes x 2 slots and beat, against the stack's simulator (its own
  process, callbacks on) with the rule N per W s that backbeat's submit bucket is set to;
- three producers at a steady total of 60% of the rule: ``alpha`` (HTTP, add-instrumental),
  ``beta`` (HTTP, add-vocals), ``gamma`` (the Python client, both types, some jobs without an
  idempotency key); random priorities, an idempotency key re-sent now and then (the same job
  must come back), a few cancels;
- fault episodes at random: throttles (the provider's window halved), 455 maintenance
  windows, 5xx, calls accepted then left unanswered past the read timeout, connections dropped
  after accepting, lost callbacks (and 5% of callbacks lost all along);
- a worker node SIGKILLed (its whole process group) about every minute, a fresh node started
  in its place; one Redis SIGKILL + restart on the same port and AOF mid-run; no fault
  episode in the seconds after a kill or the restart, so the recovery measured is the kill's;
- a short retention (``BACKBEAT_RETENTION_DAYS``: 20 s quick, 60 s full) so that records
  expire during the run; ``used_memory`` sampled every second.

Then the faults stop, the jobs drain (bounded), the run waits out the retention, and the
checker reads the tracker (each job's state, read from Redis until seen terminal: records
expire), the simulator's ledger (every create call, its arrival and title) and Redis.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plots
import requests
from common import (
    ROOT,
    START_TIMEOUT_S,
    Fleet,
    Log,
    Section,
    Stack,
    over_limit,
    table,
)
from redis import Redis

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.devstack.processes import (
    Proc,
    free_port,
    start_redis,
    wait_http,
    web_argv,
    worker_argv,
)
from backbeat.workers.errors import Conflict
from backbeat.workers.redis_conn import server_ms
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import TERMINAL

sys.path.insert(0, str(ROOT / "tests" / "chaos"))
from chaos import FSYNC_BOUND_S  # noqa: E402 - the chaos run's appendfsync everysec bound

GOAL = ("every job terminal, 0 lost, 0 paid twice (but duplicates backbeat records), no window "
        "over the rule, Redis memory flat after retention")
PREFIX = "soak"
#: the provider's rule (and backbeat's submit bucket): N calls per W seconds
RULE = (10, 2.0)
#: the producers' total rate, as a share of the rule
LOAD = 0.6
WORKERS, CONCURRENCY = 3, 2
#: create-call outcomes the provider charged (a task exists)
PAID = ("accepted", "timeout_after_accept", "dropped_after_accept")
FAULTS = ("throttle", "maintenance", "5xx", "timeouts", "drops", "lost callbacks")
#: knobs of each fault episode (the clean values are CLEAN)
CLEAN = {"rate_limit": RULE[0], "maintenance": False, "server_error_rate": 0.0,
         "accept_timeout_rate": 0.0, "drop_rate": 0.0, "callback_loss_rate": 0.05}
READ_TIMEOUT_S = 5
#: seconds after a kill when the submit grants still unanswered are counted
STUCK_AFTER_S = 3.0
EPISODE = {
    "throttle": {"rate_limit": RULE[0] // 2},
    "maintenance": {"maintenance": True},
    "5xx": {"server_error_rate": 0.3},
    "timeouts": {"accept_timeout_rate": 0.15},
    "drops": {"drop_rate": 0.1},
    "lost callbacks": {"callback_loss_rate": 0.5},
}
COLOURS = {"throttle": "tab:orange", "maintenance": "tab:red", "5xx": "tab:brown",
           "timeouts": "tab:olive", "drops": "tab:cyan", "lost callbacks": "tab:pink"}


@dataclass
class Plan:
    load_s: float
    retention_s: float
    #: seconds after a kill or the restart with no fault episode
    quiet_s: float
    kills_at: list[float]
    redis_at: float
    #: a backlog burst with no kill: the control for the recovery figures
    control_at: float
    episode_s: tuple[float, float]
    drain_s: float

    @classmethod
    def make(cls, quick: bool, rng: random.Random) -> Plan:
        default = 90.0 if quick else 600.0
        load_s = float(os.environ.get("BENCH_SOAK_S", "") or default)
        kills = max(1, round(load_s / 60) - 1) if not quick else 2
        # evenly spread, the Redis restart halfway between the middle kills, +-10% jitter
        step = load_s / (kills + 2)
        marks = [step * (i + 1) for i in range(kills + 1)]
        redis_index = len(marks) // 2
        jitter = [m + rng.uniform(-0.1, 0.1) * step for m in marks]
        redis_at = jitter.pop(redis_index)
        return cls(load_s=load_s, retention_s=20.0 if quick else 60.0,
                   quiet_s=8.0 if quick else 20.0, kills_at=jitter, redis_at=redis_at,
                   control_at=min(step / 2, 30.0),
                   episode_s=(3.0, 6.0) if quick else (8.0, 15.0),
                   drain_s=180.0 if quick else 360.0)


@dataclass
class Job:
    """One acknowledged job, as the producer and the tracker saw it."""

    id: str
    producer: str
    title: str
    acked_at: float
    key: str | None
    cancel: str = ""  # "", "cancelled", "refused" (already submitted), "error"
    state: str = ""  # the last state read
    terminal_at: float | None = None
    missing_since: float | None = None
    fields: dict[str, str] = field(default_factory=dict)


class Soak:
    def __init__(self, stack: Stack, quick: bool, log: Log) -> None:
        self.stack, self.quick, self.log = stack, quick, log
        self.rng = random.Random(1414)
        self.plan = Plan.make(quick, self.rng)
        self.dir = Path(stack.run_dir) / PREFIX
        self.redis_port, self.web_port = free_port(), free_port()
        self.tokens = {"alpha": secrets.token_hex(12), "beta": secrets.token_hex(12)}
        self.env = stack.env(
            PREFIX,
            BACKBEAT_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            BACKBEAT_CALLBACK_BASE_URL=f"http://127.0.0.1:{self.web_port}",
            BACKBEAT_SUBMIT_RATE=f"{RULE[0]}/{RULE[1]:g}s",
            BACKBEAT_API_TOKENS=",".join(f"{n}:{t}" for n, t in self.tokens.items()),
            BACKBEAT_RETENTION_DAYS=repr(self.plan.retention_s / 86400),
            BACKBEAT_READ_TIMEOUT=str(READ_TIMEOUT_S),
            BACKBEAT_UNCERTAIN_GRACE="15",
            BACKBEAT_MAX_ATTEMPTS="5",
        )
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        #: the load phase's actors stop on ``stop``; the tracker and the sampler on ``done``
        self.stop = threading.Event()
        self.done = threading.Event()
        self.counts: Counter[str] = Counter()
        self.idem_mismatch: list[str] = []
        self.episodes: list[tuple[str, float, float]] = []  # (fault, start, end) monotonic
        self.kills: list[float] = []
        #: per kill: the submit bucket's grants still unanswered STUCK_AFTER_S after it (the
        #: killed node's calls: live nodes' calls are answered in ms, and no fault episode
        #: runs then), each counting against the rule until its flight bound
        self.stuck: dict[float, int | None] = {}
        #: per kill: the submit bucket's effective limit then (AIMD after a throttle; 0 while
        #: the breaker or a pause holds it)
        self.limit_at_kill: dict[float, int | None] = {}
        self.redis_kill: float | None = None
        self.redis_back: float | None = None
        self.control: float | None = None
        self.bursts = 0
        self.burst_at: list[float] = []
        self.burst_threads: list[threading.Thread] = []
        self.memory: list[tuple[float, int, int, int]] = []  # t, used, events stream, dbsize
        self.redis_proc: Proc | None = None
        self.web: Proc | None = None
        self.fleet: Fleet | None = None
        self.t0 = 0.0

    # -- processes ----------------------------------------------------------------------

    def start(self) -> None:
        self.stack.sim.reset(rate_limit=RULE[0], rate_window_s=RULE[1], callbacks_enabled=True,
                             callback_backoff_scale=0.5, callback_loss_rate=0.05,
                             accept_timeout_sleep_s=READ_TIMEOUT_S + 1.0,
                             drop_after_accept=True, seed=1414)
        self.redis_proc = start_redis(self.dir, self.redis_port, appendonly=True)
        self.web = Proc.start("web", web_argv(self.web_port), self.env, self.dir)
        wait_http(f"{self.web_url}/healthz", START_TIMEOUT_S)
        self.fleet = Fleet(self.env, self.dir, WORKERS, CONCURRENCY).__enter__()

    def close(self) -> None:
        self.stop.set()
        self.done.set()
        if self.fleet is not None:
            self.fleet.__exit__()
        for proc in (self.web, self.redis_proc):
            if proc is not None:
                proc.stop(timeout_s=10)
        self.stack.sim.reset()  # faults off, callbacks off, for whatever runs next

    def redis(self) -> Redis:
        return Redis(port=self.redis_port, decode_responses=True, socket_timeout=5,
                     socket_connect_timeout=2)

    # -- actors -------------------------------------------------------------------------

    def produce(self, producer: str, share: float) -> None:
        """Enqueue at ``share`` of the total rate until the load phase ends."""
        rate = LOAD * RULE[0] / RULE[1] * share
        session = requests.Session()
        client = Client(Settings.from_env(self.env))
        rng = random.Random(sum(map(ord, producer)))
        #: (sent at, key, request, job id); a key is re-sent only well within its life (the
        #: idempotency key lives BACKBEAT_RETENTION_DAYS from creation, then it is free again)
        recent: list[tuple[float, str, dict[str, Any], str]] = []
        n, next_at = 0, time.monotonic()
        while not self.stop.is_set():
            next_at += rng.expovariate(rate)
            if self.stop.wait(max(0.0, next_at - time.monotonic())):
                return
            young = [r for r in recent if time.monotonic() - r[0] < self.plan.retention_s / 2]
            if young and rng.random() < 0.08:  # a key re-sent: the same job must come back
                _, key, req, first_id = rng.choice(young)
                job = self.send(producer, req, session, client)
                self.counts["idempotent re-sends"] += 1
                if job is not None and job["id"] != first_id:
                    self.idem_mismatch.append(f"{key}: {first_id} then {job['id']}")
                    with self.lock:  # tracked too: it is a job of its own now
                        self.jobs[job["id"]] = Job(job["id"], producer, req["params"]["title"],
                                                   time.monotonic(), key)
                continue
            n += 1
            job_type = {"alpha": "add-instrumental", "beta": "add-vocals"}.get(
                producer, rng.choice(["add-instrumental", "add-vocals"]))
            title = f"soak {producer} {n}"
            params = ({"uploadUrl": f"https://example.com/s/{producer}/{n}.mp3", "title": title,
                       "tags": "ambient", "negativeTags": "metal"}
                      if job_type == "add-instrumental" else
                      {"uploadUrl": f"https://example.com/s/{producer}/{n}.mp3", "title": title,
                       "prompt": "la la", "style": "Jazz", "negativeTags": "none"})
            key = None if producer == "gamma" and rng.random() < 0.3 else f"{producer}-{n}"
            req = {"type": job_type, "params": params, "priority": rng.randrange(10),
                   "idempotency_key": key}
            job = self.send(producer, req, session, client)
            if job is None:
                continue
            with self.lock:
                self.jobs[job["id"]] = Job(job["id"], producer, title, time.monotonic(), key)
            if key is not None:
                recent = [*recent[-50:], (time.monotonic(), key, req, job["id"])]
            if rng.random() < 0.04:
                self.cancel(producer, job["id"], session, client)

    def send(self, producer: str, req: dict[str, Any], session: requests.Session,
             client: Client) -> dict[str, Any] | None:
        """One enqueue; with an idempotency key, retried (same key) through outages."""
        deadline = time.monotonic() + 30
        while not self.stop.is_set():
            try:
                if producer in self.tokens:
                    resp = session.post(f"{self.web_url}/v1/jobs", json=req, timeout=10,
                                        headers={"Authorization":
                                                 f"Bearer {self.tokens[producer]}"})
                    if resp.status_code != 202:
                        raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
                    return resp.json()
                return client.enqueue(req["type"], req["params"], req["idempotency_key"],
                                      req["priority"], producer=producer)
            except Exception:  # noqa: BLE001 - Redis restarting: retry with the same key
                self.counts["enqueue errors (retried with the key)"] += 1
                if req["idempotency_key"] is None or time.monotonic() > deadline:
                    self.counts["enqueues given up (not acknowledged)"] += 1
                    return None
                time.sleep(0.3)
        return None

    def cancel(self, producer: str, job_id: str, session: requests.Session,
               client: Client) -> None:
        try:
            if producer in self.tokens:
                resp = session.delete(f"{self.web_url}/v1/jobs/{job_id}", timeout=10,
                                      headers={"Authorization": f"Bearer {self.tokens[producer]}"})
                outcome = {200: "cancelled", 409: "refused"}.get(resp.status_code, "error")
            else:
                client.cancel(job_id)
                outcome = "cancelled"
        except Conflict:  # InvalidTransition: already submitted
            outcome = "refused"
        except Exception:  # noqa: BLE001 - Redis restarting: the job goes on
            outcome = "error"
        with self.lock:
            self.jobs[job_id].cancel = outcome
        self.counts[f"cancels {outcome}"] += 1

    def track(self) -> None:
        """Read every job not yet seen terminal, every second (records expire after the
        retention: each must be seen terminal before it goes)."""
        redis = self.redis()
        fields = ("state", "upstream_task_id", "dup_task_ids", "resubmits")
        while not self.done.wait(1.0):
            self.read_jobs(redis, fields)

    def read_jobs(self, redis: Redis, fields: tuple[str, ...], all_jobs: bool = False) -> None:
        with self.lock:
            todo = [j for j in self.jobs.values() if all_jobs or j.terminal_at is None]
        try:
            pipe = redis.pipeline(transaction=False)
            for job in todo:
                pipe.hmget(f"{PREFIX}:job:{job.id}", *fields)
            rows = pipe.execute()
        except Exception:  # noqa: BLE001 - Redis restarting
            return
        now = time.monotonic()
        for job, row in zip(todo, rows, strict=True):
            if row[0] is None:
                if job.terminal_at is None and job.missing_since is None:
                    job.missing_since = now
                continue
            job.missing_since = None
            job.state = row[0]
            got = dict(zip(fields, row, strict=True))
            # keep what a record showed last (duplicates may be recorded after terminal)
            job.fields = {k: v or job.fields.get(k, "") for k, v in got.items()}
            if row[0] in TERMINAL and job.terminal_at is None:
                job.terminal_at = now

    def sample_memory(self) -> None:
        redis = self.redis()
        while not self.done.wait(1.0):
            self.memory_point(redis)

    def memory_point(self, redis: Redis) -> None:
        try:
            used = int(redis.info("memory")["used_memory"])
            stream = int(redis.memory_usage(f"{PREFIX}:events", samples=0) or 0)
            self.memory.append((time.monotonic(), used, stream, int(redis.dbsize())))
        except Exception:  # noqa: BLE001 - Redis restarting
            pass

    def chaos(self) -> None:
        """The node kills and the Redis restart, at the plan's times."""
        marks = sorted([(t, "kill") for t in self.plan.kills_at] +
                       [(self.plan.redis_at, "redis"), (self.plan.control_at, "control")])
        for n, (at, what) in enumerate(marks):
            if self.stop.wait(max(0.0, self.t0 + at - time.monotonic())):
                return
            if what == "control":
                self.control = time.monotonic()
                self.burst()
                continue
            if what == "redis":
                self.restart_redis()
                self.burst()
                continue
            slot = self.rng.randrange(WORKERS)
            old = self.fleet.procs[slot]
            old.signal(signal.SIGKILL)  # the node and its pool processes
            self.kills.append(time.monotonic())
            self.burst()
            threading.Timer(STUCK_AFTER_S, self.count_stuck, args=(self.kills[-1],)).start()
            old.popen.wait(10)
            fresh = Proc.start(f"worker{slot}-{n}", worker_argv(f"{PREFIX}{slot}r{n}",
                                                                CONCURRENCY),
                               self.env, self.dir)
            self.fleet.procs[slot] = fresh
            fresh.wait_for_log("ready.", START_TIMEOUT_S)
            self.log(f"  t={self.kills[-1] - self.t0:5.1f} s  SIGKILL node {old.name}; "
                     f"{fresh.name} ready {time.monotonic() - self.kills[-1]:.1f} s later")

    def count_stuck(self, kill: float) -> None:
        try:
            rt = Runtime(Settings.from_env(self.env))
            now_ms = server_ms(rt.redis)
            bucket = rt.primary.submit
            self.stuck[kill] = int(rt.redis.zcount(bucket.log_key, f"({now_ms}", "+inf"))
            gate = bucket.gate(now_ms)
            self.limit_at_kill[kill] = 0 if gate.closed else int(gate.effective_limit)
        except Exception:  # noqa: BLE001 - Redis restarting: not counted
            self.stuck[kill] = self.limit_at_kill[kill] = None

    def burst(self) -> None:
        """A batch producer drops 2N jobs at once (in its own thread): a backlog the fleet
        should serve at the rule's rate, kill or no kill."""
        self.bursts += 1
        k = self.bursts
        self.burst_at.append(time.monotonic())

        def drop() -> None:
            client = Client(Settings.from_env(self.env))
            for i in range(2 * RULE[0]):
                title = f"soak batch {k} {i}"
                req = {"type": "add-instrumental", "priority": 0,
                       "idempotency_key": f"batch-{k}-{i}",
                       "params": {"uploadUrl": f"https://example.com/s/batch/{k}/{i}.mp3",
                                  "title": title, "tags": "drone", "negativeTags": "metal"}}
                job = self.send("batch", req, requests.Session(), client)
                if job is not None:
                    with self.lock:
                        self.jobs[job["id"]] = Job(job["id"], "batch", title, time.monotonic(),
                                                   req["idempotency_key"])

        th = threading.Thread(target=drop, daemon=True)
        th.start()
        self.burst_threads.append(th)

    def restart_redis(self) -> None:
        self.redis_proc.signal(signal.SIGKILL)
        self.redis_kill = time.monotonic()
        self.redis_proc.popen.wait(10)
        time.sleep(0.5)
        self.redis_proc = start_redis(self.dir, self.redis_port, appendonly=True)
        self.redis_back = time.monotonic()
        self.log(f"  t={self.redis_kill - self.t0:5.1f} s  Redis SIGKILL; back on port "
                 f"{self.redis_port} (AOF) {self.redis_back - self.redis_kill:.1f} s later")

    def faults(self) -> None:
        """Random fault episodes, each type in turn (shuffled), never in a quiet period."""
        quiet = [(t, t + self.plan.quiet_s) for t in [*self.plan.kills_at, self.plan.redis_at,
                                                       self.plan.control_at]]
        order: list[str] = []
        end_at = self.plan.load_s - 3
        t = 3.0
        while t < end_at:
            if not order:
                order = self.rng.sample(FAULTS, len(FAULTS))
            length = self.rng.uniform(*self.plan.episode_s)
            span = (t, t + length)
            hit = [q for q in quiet if q[0] - 1 < span[1] and span[0] < q[1]]
            if hit:  # start after the quiet period instead
                t = max(q[1] for q in hit) + 0.5
                continue
            if span[1] > end_at:
                break
            if self.stop.wait(max(0.0, self.t0 + span[0] - time.monotonic())):
                return
            fault = order.pop()
            start = time.monotonic()
            self.stack.sim.set_knobs(**EPISODE[fault])
            # a kill may come inside the episode only if planned so; the plan avoids it
            if self.stop.wait(max(0.0, self.t0 + span[1] - time.monotonic())):
                self.stack.sim.set_knobs(**CLEAN)
                self.episodes.append((fault, start, time.monotonic()))
                return
            self.stack.sim.set_knobs(**CLEAN)
            self.episodes.append((fault, start, time.monotonic()))
            t = span[1] + self.rng.uniform(1.5, 4.0)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        plan = self.plan
        self.start()
        redis = self.redis()
        for _ in range(3):
            self.memory_point(redis)
            time.sleep(0.5)
        baseline = self.memory[-1]
        self.t0 = time.monotonic()
        producers = [threading.Thread(target=self.produce, args=(p, s), daemon=True)
                     for p, s in (("alpha", 0.4), ("beta", 0.3), ("gamma", 0.3))]
        others = [threading.Thread(target=f, daemon=True)
                  for f in (self.track, self.sample_memory, self.chaos, self.faults)]
        for th in producers + others:
            th.start()
        self.log(f"load: {plan.load_s:.0f} s at {LOAD:.0%} of the rule; kills at "
                 f"{', '.join(f'{k:.0f}' for k in plan.kills_at)} s, Redis restart at "
                 f"{plan.redis_at:.0f} s")
        load_end = self.t0 + plan.load_s
        while time.monotonic() < load_end:  # bounded by load_end
            time.sleep(min(5.0, max(0.0, load_end - time.monotonic())))
            self.progress()
        # stop the producers, the chaos and the faults; the tracker and the sampler go on
        self.stop.set()
        for th in producers + others[2:] + self.burst_threads:
            th.join(START_TIMEOUT_S)
        self.stack.sim.set_knobs(**{**CLEAN, "callback_loss_rate": 0.0})
        drain_end = time.monotonic() + plan.drain_s
        self.log(f"faults off at t={time.monotonic() - self.t0:.0f} s; draining (at most "
                 f"{plan.drain_s:.0f} s)")
        while time.monotonic() < drain_end and not self.all_settled():
            time.sleep(2)
        drained_at = time.monotonic()
        self.progress()
        # every record still there read once more, terminal ones too (a duplicate recorded
        # after the end; a state rolled back by the Redis restart)
        self.read_jobs(redis, ("state", "upstream_task_id", "dup_task_ids", "resubmits"),
                       all_jobs=True)
        # retention: every record must expire and the trims run (housekeeping every 5 s)
        expiry_end = drained_at + plan.retention_s + 30
        time.sleep(plan.retention_s + 6)
        while time.monotonic() < expiry_end and self.job_keys(redis):
            time.sleep(1)
        time.sleep(6)  # one more housekeeping beat after the last record left
        self.done.set()
        for th in others[:2]:
            th.join(30)
        self.read_jobs(redis, ("state", "upstream_task_id", "dup_task_ids", "resubmits"),
                       all_jobs=True)
        final = self.census(redis)
        self.memory_point(redis)
        events = self.events(redis)
        calls, stats = self.stack.sim.calls(), self.stack.sim.stats()
        return {"baseline": baseline, "final": final, "events": events, "calls": calls,
                "stats": stats, "drained_at": drained_at, "load_end": load_end}

    def progress(self) -> None:
        with self.lock:
            jobs = list(self.jobs.values())
        done = sum(1 for j in jobs if j.terminal_at is not None)
        mem = self.memory[-1][1] / 2**20 if self.memory else 0
        self.log(f"  t={time.monotonic() - self.t0:5.0f} s  jobs {len(jobs):5d}  terminal "
                 f"{done:5d}  used_memory {mem:6.2f} MiB  episodes {len(self.episodes)}  "
                 f"kills {len(self.kills)}")

    def all_settled(self) -> bool:
        with self.lock:
            return all(j.terminal_at is not None for j in self.jobs.values())

    def job_keys(self, redis: Redis) -> int:
        try:
            return sum(1 for _ in redis.scan_iter(f"{PREFIX}:job:*", count=1000))
        except Exception:  # noqa: BLE001
            return -1

    def census(self, redis: Redis) -> dict[str, Any]:
        """Every key left, by shape (a job id replaced by ``*``), with its size."""
        ids = set(self.jobs)
        shapes: Counter[str] = Counter()
        per_job = 0
        sizes: dict[str, int] = {}
        for key in redis.scan_iter(f"{PREFIX}:*", count=1000):
            parts = key.split(":")
            shaped = ":".join("*" if p in ids else p for p in parts)
            if shaped != key:
                per_job += 1
            else:
                kind = redis.type(key)
                size = {"zset": redis.zcard, "hash": redis.hlen, "list": redis.llen,
                        "set": redis.scard, "stream": redis.xlen}.get(kind)
                sizes[key] = size(key) if size else 1
            shapes[shaped] += 1
        idem_left = sum(1 for k in shapes if k.startswith(f"{PREFIX}:idem:"))
        return {"per_job_keys": per_job, "shapes": shapes, "sizes": sizes,
                "idem_keys": idem_left}

    def events(self, redis: Redis) -> list[tuple[float, str]]:
        """(monotonic time, to-state) of every transition in the events stream."""
        offset = time.time() - time.monotonic()
        out = []
        for entry_id, fields in redis.xrange(f"{PREFIX}:events"):
            out.append((int(entry_id.split("-")[0]) / 1000 - offset, fields.get("to", "")))
        return out


# -- the checker ------------------------------------------------------------------------------


def check(soak: Soak, res: dict[str, Any]) -> dict[str, Any]:
    plan, jobs = soak.plan, list(soak.jobs.values())
    calls = res["calls"]
    limit, window_s = RULE
    paid: dict[str, list[dict]] = defaultdict(list)
    for c in calls:
        if c["outcome"] in PAID:
            paid[c["title"]].append(c)
    in_fsync = set()
    if soak.redis_kill is not None:
        in_fsync = {j.id for j in jobs if 0 <= soak.redis_kill - j.acked_at < FSYNC_BOUND_S}
    never_terminal = [j for j in jobs if j.terminal_at is None or j.state not in TERMINAL]
    lost = [j for j in never_terminal if j.id not in in_fsync]
    states = Counter(j.state for j in jobs if j.terminal_at is not None)
    per_title = Counter(j.title for j in jobs)  # > 1 only after an idempotency mismatch
    twice = [j for j in jobs if len(paid.get(j.title, [])) > per_title[j.title]]
    explained = [j for j in twice if j.fields.get("dup_task_ids") or int(
        j.fields.get("resubmits") or 0) > 0]
    silent = [j for j in twice if j not in explained]
    cancelled_paid = [j for j in jobs if j.state == "cancelled" and paid.get(j.title)]
    cancel_lost = [j for j in jobs if j.cancel == "cancelled" and j.state != "cancelled"]
    times = [c["t"] for c in calls]
    violations = over_limit(times, window_s, limit)
    load = [c for c in calls if soak.t0 <= c["t"] <= res["load_end"]]
    return {"in_fsync": in_fsync, "lost": lost, "states": states, "twice": twice,
            "explained": explained, "silent": silent, "cancelled_paid": cancelled_paid,
            "cancel_lost": cancel_lost, "violations": violations, "paid": paid,
            "calls_in_load": len(load), "memory": memory_verdict(soak, res),
            "recoveries": recoveries(soak, calls), "plan": plan}


def memory_verdict(soak: Soak, res: dict[str, Any]) -> dict[str, Any]:
    """Memory without the events stream (capped by its length, 100,000 entries, not by the
    retention) in the middle third of the load, in its last 15%, and after the drain and the
    retention; flat: the end no higher than mid-run plus the tolerance, and no per-job key
    left."""
    t0, load_s = soak.t0, soak.plan.load_s
    ex = [(t - t0, used - stream, stream, keys) for t, used, stream, keys in soak.memory]

    def median_in(lo: float, hi: float) -> float:
        vals = [m for t, m, _, _ in ex if lo <= t <= hi]
        return statistics.median(vals) if vals else float("nan")

    mid = median_in(load_s / 3, 2 * load_s / 3)
    end_load = median_in(0.85 * load_s, load_s)
    final = ex[-1][1] if ex else float("nan")
    base = res["baseline"][1] - res["baseline"][2]
    # tolerance: 256 KiB (allocator slack, kombu's and the limiter's own keys, which do not
    # grow with jobs) plus 10% of what the jobs alive mid-run occupy
    tolerance = 256 * 1024 + 0.10 * max(0.0, mid - base)
    census = res["final"]
    flat = final <= mid + tolerance and census["per_job_keys"] == 0
    return {"base": base, "mid": mid, "end_load": end_load, "final": final,
            "tolerance": tolerance, "flat": flat, "per_job_keys": census["per_job_keys"],
            "stream_end": ex[-1][2] if ex else 0, "stream_entries": census["sizes"].get(
                f"{PREFIX}:events", 0), "dbsize_mid": max((k for t, _, _, k in ex
                                                           if load_s / 3 <= t <= 2 * load_s / 3),
                                                          default=0),
            "dbsize_final": ex[-1][3] if ex else 0}


def recoveries(soak: Soak, calls: list[dict]) -> list[dict[str, Any]]:
    """For each kill, the Redis restart and the control burst (each drops 2N jobs at once):
    seconds until a sliding window of W holds the rule's N create calls again (None: not
    within 90 s). With the backlog there, the fleet should fill windows at once: the control
    (no kill) shows the floor (about W: a window must fill)."""
    limit, window_s = RULE
    out = []
    marks = [("node kill", k) for k in soak.kills]
    if soak.redis_kill is not None:
        marks.append(("Redis restart", soak.redis_kill))
    if soak.control is not None:
        marks.append(("control (no kill)", soak.control))
    for what, at in sorted(marks, key=lambda m: m[1]):
        after = [c["t"] for c in calls if c["t"] >= at]  # windows of calls after the mark
        xs, ys = plots.sliding_counts(after, window_s, at, at + 90, step_s=0.1)
        back = next((x for x, y in zip(xs, ys, strict=True) if y >= limit), None)
        # the fault episode that ended last before the mark, if recent: a throttle's rate cut
        # or a breaker still open slows the recovery, not the kill
        before = [(at - end, fault) for fault, _, end in soak.episodes
                  if end <= at and fault in ("throttle", "maintenance", "5xx")]
        ago, fault = min(before) if before else (float("inf"), "")
        out.append({"what": what, "t": round(at - soak.t0, 1), "stuck": soak.stuck.get(at),
                    "limit": soak.limit_at_kill.get(at),
                    "recovered_s": None if back is None else round(back, 1),
                    "after": f"{fault} ended {ago:.0f} s before" if ago < 30 else ""})
    return out


# -- the section -----------------------------------------------------------------------------


def plot(soak: Soak, res: dict[str, Any]) -> bytes:
    limit, window_s = RULE
    t0 = soak.t0
    t1 = res["drained_at"]
    calls = res["calls"]
    fig, (ax, zoom) = plots.plt.subplots(2, 1, figsize=(11, 8.5), dpi=100,
                                         gridspec_kw={"height_ratios": [3, 2]})
    ax.set_title(f"Recovery after node kills and a Redis restart (rule {limit} per "
                 f"{window_s:g} s)")
    ax.grid(True, alpha=0.3)
    xs, ys = plots.sliding_counts([c["t"] for c in calls], window_s, t0, t1)
    ax.plot(xs, ys, lw=1, color="tab:blue", label=f"create calls in the last {window_s:g} s")
    xs, ys = plots.sliding_counts([c["t"] for c in calls if c["outcome"] in PAID], window_s,
                                  t0, t1)
    ax.plot(xs, ys, lw=1, color="tab:green", alpha=0.8, label="... accepted")
    done = [t for t, to in res["events"] if to in TERMINAL]
    xs, ys = plots.sliding_counts(done, window_s, t0, t1)
    ax.plot(xs, ys, lw=1, color="black", alpha=0.6, label="jobs finished")
    ax.axhline(limit, color="grey", ls=":", label=f"rule N = {limit}")
    seen: set[str] = set()
    for fault, a, b in soak.episodes:
        ax.axvspan(a - t0, b - t0, color=COLOURS[fault], alpha=0.15,
                   label=None if fault in seen else f"fault: {fault}")
        seen.add(fault)
    for n, k in enumerate(soak.kills):
        ax.axvline(k - t0, color="red", ls="--", lw=1.2, label="node SIGKILL" if n == 0 else None)
    if soak.redis_kill is not None:
        ax.axvline(soak.redis_kill - t0, color="purple", ls="-", lw=1.5,
                   label="Redis SIGKILL + restart")
    for n, b in enumerate(soak.burst_at):
        ax.plot([b - t0], [limit * 1.45], marker="v", color="black", ls="none",
                label=f"{2 * limit} jobs dropped at once" if n == 0 else None)
    if soak.control is not None:
        ax.axvline(soak.control - t0, color="grey", ls="--", lw=1, label="control burst (no kill)")
    ax.axvline(soak.plan.load_s, color="grey", ls="-.", lw=1, label="load ends, faults off")
    ax.set_xlabel("seconds from the start of the load")
    ax.set_ylabel(f"per sliding {window_s:g} s window")
    ax.set_ylim(0, limit * 1.6)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=5)
    # below: the same curve around each mark, aligned on it
    zoom.set_title("Create calls per sliding window around each mark (0 = the kill, the "
                   "restart or the control burst)", fontsize=10)
    zoom.grid(True, alpha=0.3)
    times = [c["t"] for c in calls]
    marks = [(k, "tab:red", 0.9, "-", "node SIGKILL") for k in soak.kills]
    if soak.redis_kill is not None:
        marks.append((soak.redis_kill, "purple", 2.0, "-", "Redis SIGKILL + restart"))
    if soak.control is not None:
        marks.append((soak.control, "black", 1.5, "--", "control burst (no kill)"))
    labelled: set[str] = set()
    for at, colour, lw, ls, label in marks:
        xs, ys = plots.sliding_counts(times, window_s, at - 10, at + 30, step_s=0.1)
        zoom.plot([x - 10 for x in xs], ys, color=colour, lw=lw, ls=ls, alpha=0.7,
                  label=None if label in labelled else label)
        labelled.add(label)
    zoom.axhline(limit, color="grey", ls=":")
    zoom.axvline(0, color="grey", lw=0.8)
    zoom.set_xlabel("seconds from the mark")
    zoom.set_ylabel(f"per sliding {window_s:g} s window")
    zoom.set_ylim(0, limit * 1.3)
    zoom.legend(loc="lower right", fontsize=7)
    return plots.png(fig)


def plot_memory(soak: Soak, mem: dict[str, Any]) -> bytes:
    t0, load_s, mib = soak.t0, soak.plan.load_s, 2**20
    fig, ax = plots.figure(f"Redis used_memory (retention {soak.plan.retention_s:g} s)",
                           width=11, height=3.5)
    xs = [t - t0 for t, _, _, _ in soak.memory]
    ax.plot(xs, [u / mib for _, u, _, _ in soak.memory], lw=1, color="tab:blue",
            label="used_memory")
    ax.plot(xs, [(u - e) / mib for _, u, e, _ in soak.memory], lw=1, color="tab:green",
            label="without the events stream (capped by length)")
    ax.plot(xs, [e / mib for _, _, e, _ in soak.memory], lw=1, color="tab:grey",
            label="events stream")
    ax.axvspan(load_s / 3, 2 * load_s / 3, color="tab:green", alpha=0.08,
               label="mid-run (its median: the reference)")
    ax.axhline((mem["mid"] + mem["tolerance"]) / mib, color="tab:green", ls=":",
               label="mid-run median + tolerance")
    if soak.redis_kill is not None:
        ax.axvline(soak.redis_kill - t0, color="purple", lw=1.5, label="Redis SIGKILL + restart")
    ax.axvline(load_s, color="grey", ls="-.", lw=1, label="load ends, faults off")
    ax.set_xlabel("seconds from the start of the load")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=7, ncol=4)
    return plots.png(fig)


def run(stack: Stack, quick: bool, log: Log) -> Section:
    soak = Soak(stack, quick, log)
    log(f"soak: rule {RULE[0]} per {RULE[1]:g} s (simulator and BACKBEAT_SUBMIT_RATE), "
        f"{WORKERS} nodes x {CONCURRENCY}, retention {soak.plan.retention_s:g} s, "
        f"load {soak.plan.load_s:g} s (BENCH_SOAK_S)")
    started = time.monotonic()
    try:
        res = soak.run()
    finally:
        soak.close()
    r = check(soak, res)
    mem, stats = r["memory"], res["stats"]
    jobs = list(soak.jobs.values())
    elapsed = time.monotonic() - started
    finished = sum(1 for j in jobs if j.terminal_at is not None)
    idem_ok = not soak.idem_mismatch
    met = (not r["lost"] and not r["silent"] and r["violations"] == 0 and mem["flat"]
           and idem_ok and not r["cancelled_paid"] and not r["cancel_lost"])
    faults = Counter(f for f, _, _ in soak.episodes)
    recov = r["recoveries"]

    def secs(what: str) -> str:
        def one(x: dict[str, Any]) -> str:
            notes = [x["after"]] if x["after"] else []
            if x.get("stuck"):
                notes.append(f"{x['stuck']} unanswered grant{'s' * (x['stuck'] > 1)}")
            if x.get("limit") is not None and x["limit"] < RULE[0]:
                notes.append(f"effective limit {x['limit']} of {RULE[0]}")
            return ((f"{x['recovered_s']:.1f}" if x["recovered_s"] is not None
                     else "not within 90 s") + (f" ({'; '.join(notes)})" if notes else ""))
        return ", ".join(one(x) for x in recov if x["what"] == what) or "-"
    throughput = finished / max(1.0, res["drained_at"] - soak.t0)
    for line in (
        f"jobs acknowledged {len(jobs)}, seen terminal {finished}, states {dict(r['states'])}",
        f"lost {len(r['lost'])} {[j.id for j in r['lost'][:10]]}, missing in the fsync window "
        f"{len([j for j in r['in_fsync'] if soak.jobs[j].terminal_at is None])}",
        f"paid twice {len(r['twice'])}: recorded by backbeat {len(r['explained'])}, silent "
        f"{len(r['silent'])} {[(j.id, j.title) for j in r['silent'][:10]]}",
        f"windows over the rule {r['violations']} (most calls in a window "
        f"{stats['max_calls_in_window']})",
        f"memory (without the events stream) base {mem['base'] / 2**20:.2f} MiB, mid-run "
        f"{mem['mid'] / 2**20:.2f}, end of load {mem['end_load'] / 2**20:.2f}, final "
        f"{mem['final'] / 2**20:.2f} (tolerance {mem['tolerance'] / 2**20:.2f}); per-job "
        f"keys left {mem['per_job_keys']}; other keys left (entries) {res['final']['sizes']}",
        f"idempotency mismatches {soak.idem_mismatch[:5]}; cancelled but paid "
        f"{[j.id for j in r['cancelled_paid']]}; cancel acknowledged but not cancelled "
        f"{[(j.id, j.state) for j in r['cancel_lost']]}",
        f"recoveries {recov}",
        f"faults {dict(faults)}; counters {dict(soak.counts)}",
    ):
        log(line)
    for j in r["silent"][:10]:
        log(f"  silent duplicate {j.id} {j.title!r} state {j.state} fields {j.fields}; paid "
            f"calls at t={[round(c['t'] - soak.t0, 1) for c in r['paid'][j.title]]} "
            f"({[c['outcome'] for c in r['paid'][j.title]]})")
    for j in r["lost"][:10]:
        log(f"  lost {j.id} {j.title!r} last state {j.state!r}, acked t="
            f"{j.acked_at - soak.t0:.1f}, missing since "
            f"{'-' if j.missing_since is None else round(j.missing_since - soak.t0, 1)}")

    def yes(ok: bool) -> str:
        return "yes" if ok else "**NO**"

    mib = 2**20
    body = "\n".join([
        f"Own redis-server with AOF (`appendfsync everysec`), web (gunicorn: the HTTP API and "
        f"the provider's callbacks), {WORKERS} worker nodes x {CONCURRENCY} slots and beat, "
        f"against the simulator (own process, callbacks on) with the rule {RULE[0]} per "
        f"{RULE[1]:g} s, which is also `BACKBEAT_SUBMIT_RATE`. "
        f"{soak.plan.load_s:.0f} s of load (`BENCH_SOAK_S`) at {LOAD:.0%} of the rule from "
        "three producers (two over HTTP with their own tokens, one through the Python "
        "client; both job types, priorities 0-9, 8% of sends re-send an earlier "
        "idempotency key, 4% of jobs cancelled at once, some of the client's jobs without a "
        "key), random fault episodes, a node SIGKILLed about every minute (a fresh node "
        "started in its place), one Redis SIGKILL + AOF restart; retention "
        f"`BACKBEAT_RETENTION_DAYS` = {soak.plan.retention_s:g} s; read timeout "
        f"{READ_TIMEOUT_S} s, uncertain grace 15 s. Then faults off, drain, retention "
        "waited out, and the checks.", "",
        table(["invariant", "count", "holds"], [
            ["jobs acknowledged / seen terminal (each read until terminal: records expire)",
             f"{len(jobs):,} / {finished:,}", yes(not r["lost"])],
            ["**jobs lost** (never terminal; not counting those acknowledged < "
             f"{FSYNC_BOUND_S:g} s before the Redis SIGKILL)", f"**{len(r['lost'])}**",
             yes(not r["lost"])],
            ["... acknowledged within the fsync window and gone",
             str(len([j for j in r["in_fsync"] if soak.jobs[j].terminal_at is None])), "-"],
            ["jobs paid twice (simulator ledger, by title)", str(len(r["twice"])), "-"],
            ["... recorded by backbeat (duplicate task ids, resubmission after the grace)",
             str(len(r["explained"])), "-"],
            ["**silent duplicates**", f"**{len(r['silent'])}**", yes(not r["silent"])],
            ["create calls over the rule (any window of the ledger's arrivals)",
             f"{r['violations']} (most in a window: {stats['max_calls_in_window']} / "
             f"{RULE[0]})", yes(r["violations"] == 0)],
            ["idempotency key re-sent: a different job came back",
             f"{len(soak.idem_mismatch)} of {soak.counts['idempotent re-sends']}",
             yes(idem_ok)],
            ["cancel acknowledged but job not cancelled / cancelled job paid",
             f"{len(r['cancel_lost'])} / {len(r['cancelled_paid'])}",
             yes(not r["cancel_lost"] and not r["cancelled_paid"])],
            ["Redis memory without the events stream: mid-run / end of load / after "
             "retention (tolerance)",
             f"{mem['mid'] / mib:.2f} / {mem['end_load'] / mib:.2f} / {mem['final'] / mib:.2f}"
             f" MiB (+{mem['tolerance'] / mib:.2f})", yes(mem["flat"])],
            ["per-job keys left after retention (records, histories, idempotency keys)",
             str(mem["per_job_keys"]), yes(mem["per_job_keys"] == 0)],
        ]), "",
        table(["figure", "value"], [
            ["final states", ", ".join(f"{k} {v:,}" for k, v in sorted(r["states"].items()))],
            ["throughput (jobs finished / s, load + drain)", f"{throughput:.2f}"],
            ["create calls / accepted by the provider",
             f"{stats['calls_total']:,} / {stats['accepted']:,}"],
            ["fault episodes", ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))],
            ["answers under faults: throttled / 455 / 5xx / unanswered after accepting / "
             "dropped / callbacks lost",
             f"{stats['throttled']} / {stats['maintenance']} / {stats['server_errors']} / "
             f"{stats['timeouts_after_accept']} / {stats['dropped']} / "
             f"{stats['callbacks_lost']}"],
            ["node SIGKILLs / Redis SIGKILL + restarts", f"{len(soak.kills)} / "
             f"{int(soak.redis_kill is not None)}"],
            [f"recovery: s from each node kill until a {RULE[1]:g} s window holds the rule's "
             f"{RULE[0]} calls again", secs("node kill")],
            ["... from the Redis SIGKILL (restart included)", secs("Redis restart")],
            ["... the same backlog burst with no kill (control)", secs("control (no kill)")],
            ["idempotent re-sends / cancels (done, refused: already submitted)",
             f"{soak.counts['idempotent re-sends']} / {soak.counts['cancels cancelled']}, "
             f"{soak.counts['cancels refused']}"],
            ["enqueue errors retried with the key / given up",
             f"{soak.counts['enqueue errors (retried with the key)']} / "
             f"{soak.counts['enqueues given up (not acknowledged)']}"],
            ["events stream at the end (capped at 100,000 entries, not by retention)",
             f"{mem['stream_entries']:,} entries, {mem['stream_end'] / mib:.2f} MiB (at its "
             f"cap: about {mem['stream_end'] / max(1, mem['stream_entries']) * 1e5 / mib:.0f}"
             " MiB)"],
            ["broker messages unacknowledged after the run (held by killed nodes: kombu "
             "restores them after the visibility timeout; backbeat's leases moved their jobs)",
             str(res["final"]["sizes"].get(f"{PREFIX}:celery:unacked", 0))],
            ["Redis keys mid-run (most) / after retention",
             f"{mem['dbsize_mid']:,} / {mem['dbsize_final']:,}"],
            ["elapsed", f"{elapsed:.0f} s"],
        ]), "",
        "![Create calls, accepted calls and finished jobs per sliding window; node kills, "
        "the Redis restart and the fault episodes marked](bench-soak-recovery.png)", "",
        "![Redis used_memory over the run, with and without the events stream]"
        "(bench-soak-memory.png)", "",
        f"- goal ({GOAL}): **{'met' if met else 'MISSED'}**",
        f"- recovery: at each kill, at the Redis restart and once with no kill (the "
        f"control) a batch producer drops {2 * RULE[0]} jobs at once, so the fleet has a "
        f"backlog to serve at the rule's rate; the figure is the time from the mark until "
        f"{RULE[0]} create calls made after it fall in one {RULE[1]:g} s window. No fault "
        f"episode starts within {soak.plan.quiet_s:g} s after a mark; a throttle, 455 or 5xx "
        "episode that ended less than 30 s before a mark is named beside its figure (a "
        "throttle leaves the rate cut, `BACKBEAT_THROTTLE_BETA`, to climb back; a 455 leaves "
        "the breaker open). Beside a kill's figure: the submit grants still unanswered "
        f"{STUCK_AFTER_S:g} s after it (the killed node's calls in flight or answers it held "
        "unsent); each counts against the rule until its flight bound (connect + read timeout "
        "+ 10 s after its grant), the safe side, so a window holds fewer calls until then; "
        "and the bucket's effective limit then when below the rule (a throttle's cut still "
        "climbing back, or 0 while the breaker holds).",
        "- memory flat: Redis `used_memory` minus the events stream (capped by length, "
        "100,000 entries, by design) after the drain and the retention is at most its "
        "mid-run median plus 256 KiB and 10% of what the live jobs took mid-run (allocator "
        "slack; kombu's and the limiter's own keys do not grow with jobs), and no key of any "
        "job is left.",
    ])
    images = {"bench-soak-recovery.png": plot(soak, res),
              "bench-soak-memory.png": plot_memory(soak, mem)}
    return Section("soak", "Soak under chaos", GOAL, body, met=met, images=images)
