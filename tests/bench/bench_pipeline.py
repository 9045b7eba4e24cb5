"""Pipeline overhead: backbeat end to end against a bare Celery task that only POSTs.

*backbeat*: the real web (gunicorn as the Procfile runs it) takes ``POST /v1/jobs``; one worker
node (the Procfile's ``worker`` line, ``-c 2``) takes each job through the limiter and the job's
read (one pipeline), the claim (transition.lua), the provider call and the ``submitted``
transition. *bare*: tests/bench/pipeline_bare.py, one worker node with the same concurrency and
the Celery settings that matter (late ack, prefetch 1, JSON, task events and sent events on),
whose task only POSTs the same request to the same simulator and writes the answer's task id
to Redis (one pipelined round trip).

Four arms, two comparisons of the same work: HTTP enqueue (backbeat's web against the bare
task's own HTTP front, ``pipeline_bare:web`` under the same gunicorn flags, which calls
``.delay``: the goal's pair) and in-process enqueue (backbeat's ``Client.enqueue`` against
``.delay``, both in this process).

The simulator has no limit (10^9 per second), BACKBEAT_SUBMIT_RATE is as high, so neither the
limiter nor the lanes ever bind; the simulator sends no callbacks and no beat runs (no polls:
the pipeline ends when the job's state is in Redis). Both fleets stay up the whole time (each
arm runs beside the other's idle fleet). Producers: ENQUEUE_THREADS threads in this process,
each job with an idempotency key (backbeat) or its own id (bare).

Throughput: the four arms in turn, the order reversed every other round, N jobs each;
jobs/s = N / (first enqueue -> last state in Redis); ratio = median of the per-round ratios.
Idle latency: one job at a time, the arms in turn, enqueue timestamp (``time.time()`` before
the call) to the simulator ledger's arrival ``wall`` stamp (same host clock, loopback).

Profile (separate passes, never inside the timed pairs): Redis ``INFO commandstats`` deltas per
job for each arm (over the timed runs; the bench's own completion polls subtracted), the
``SLOWLOG`` of one run per arm at threshold 0 (every top-level command with its µs; EVALSHA
named by script), and py-spy samples of backbeat's two pool processes over one run (wall clock,
idle included), folded into the steps of a submit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import requests
from common import START_TIMEOUT_S, Fleet, Log, Section, Stack, table
from redis import Redis

from backbeat.devstack.processes import Proc, free_port, venv_bin, wait_http, web_argv

GOAL = ("end-to-end jobs/s, HTTP enqueue -> provider call -> state in Redis, >= 0.8x a bare "
        "Celery task that only POSTs, enqueued through HTTP too (same workers, same web "
        "flags); idle enqueue -> provider-call latency p50/p99 reported against the bare "
        "task's")
TARGET = 0.8
PREFIX = "pl"
BARE_PREFIX = "bare"
BARE_DB = 1
WORKERS, CONCURRENCY = 1, 2
ENQUEUE_THREADS = 4
UNLIMITED = 10**9
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "tags": "rock", "negativeTags": "metal"}
#: completion polls of this process (one command each, subtracted from commandstats)
POLL_S = 0.02
PYSPY_RATE = 200


# -- the two arms ------------------------------------------------------------------------------


class Arms:
    """Both fleets up: backbeat web + worker node, the bare worker node; producers for each."""

    def __init__(self, stack: Stack, run_dir: Path, log: Log) -> None:
        self.stack, self.run_dir, self.log = stack, run_dir, log
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env = stack.env(PREFIX, BACKBEAT_SUBMIT_RATE=f"{UNLIMITED}/1s",
                             BACKBEAT_SUBMIT_BURST=str(UNLIMITED),
                             BACKBEAT_CREDITS_INTERVAL="0")
        self.bare_url = f"redis://127.0.0.1:{stack.redis_port}/{BARE_DB}"
        self.bare_env = {**{k: v for k, v in os.environ.items() if not k.startswith("BACKBEAT_")},
                         "PYTHONPATH": str(Path(__file__).resolve().parent),
                         "PIPELINE_BROKER_URL": self.bare_url, "PIPELINE_STATE_URL": self.bare_url,
                         "PIPELINE_SIM_URL": stack.sim.url, "PIPELINE_API_KEY": stack.api_key,
                         "PIPELINE_KEY_PREFIX": BARE_PREFIX}
        self.redis = Redis(port=stack.redis_port, decode_responses=True)
        self.bare_redis = Redis(port=stack.redis_port, db=BARE_DB, decode_responses=True)
        self.procs: list[Proc] = []
        self.fleet: Fleet | None = None
        self.local = threading.local()
        self.seq = 0
        self.lock = threading.Lock()

    def __enter__(self) -> Arms:
        try:
            self.procs.append(Proc.start("pipeline-web", web_argv(self.web_port, workers=2),
                                         self.env, self.run_dir))
            wait_http(f"{self.web_url}/healthz", START_TIMEOUT_S)
            self.fleet = Fleet(self.env, self.run_dir, WORKERS, CONCURRENCY, beat=False)
            self.fleet.__enter__()
            for n in range(WORKERS):
                proc = Proc.start(f"bare{n}", [
                    venv_bin("celery"), "-A", "pipeline_bare", "worker", "-Q", "bare",
                    "--prefetch-multiplier", "1", "--concurrency", str(CONCURRENCY), "-l", "INFO",
                    "-n", f"bare{n}@%h", "--without-mingle", "--without-gossip"],
                    self.bare_env, self.run_dir)
                self.procs.append(proc)
                proc.wait_for_log("ready.", START_TIMEOUT_S)
            self.bare_web_port = free_port()
            self.bare_web_url = f"http://127.0.0.1:{self.bare_web_port}"
            argv = web_argv(self.bare_web_port, workers=2)
            argv[1] = "pipeline_bare:web"  # the same gunicorn flags, the bare HTTP front
            self.procs.append(Proc.start("pipeline-bare-web", argv, self.bare_env,
                                         self.run_dir))
            wait_http(f"{self.bare_web_url}/jobs", START_TIMEOUT_S)
            os.environ.update({k: v for k, v in self.bare_env.items()
                               if k.startswith("PIPELINE_")})
            import pipeline_bare

            pipeline_bare.app.conf.broker_url = self.bare_url
            self.bare = pipeline_bare
            from backbeat.config.settings import Settings
            from backbeat.workers.signing import callback_url
            settings = Settings.from_env(self.env)
            from backbeat.api.client import Client

            self.client = Client(settings)
            self.callback_base = f"{settings.callback_base_url}/v1/callbacks/"
            self.sig = callback_url(settings, settings.secret, "x").split("?sig=")[1]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fleet is not None:
            self.fleet.__exit__()
        for proc in self.procs:
            proc.stop(timeout_s=5)

    # producers: one call each

    def _session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def title(self, arm: str) -> str:
        with self.lock:
            self.seq += 1
            return f"pl-{arm}-{self.seq}"

    def post(self, title: str) -> str:
        """backbeat: POST /v1/jobs (with an Idempotency-Key); the job id."""
        resp = self._session().post(f"{self.web_url}/v1/jobs", json={
            "type": "add-instrumental", "params": {**PARAMS, "title": title}},
            headers={"Idempotency-Key": title}, timeout=30)
        if resp.status_code != 202:
            raise RuntimeError(f"POST /v1/jobs answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()["id"]

    def post_bare(self, title: str) -> str:
        """bare-http: POST /jobs to the bare HTTP front (gunicorn, ``post.delay``)."""
        job_id = uuid.uuid4().hex
        resp = self._session().post(f"{self.bare_web_url}/jobs", json={
            "params": {**PARAMS, "title": title},
            "callback_url": f"{self.callback_base}{job_id}?sig={self.sig}"}, timeout=30)
        if resp.status_code != 202:
            raise RuntimeError(f"bare POST /jobs answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()["id"]

    def enqueue(self, title: str) -> str:
        """backbeat-client: ``Client.enqueue`` in this process (the Python-import producer)."""
        return self.client.enqueue("add-instrumental", {**PARAMS, "title": title},
                                   idempotency_key=title)["id"]

    def send(self, arm: str) -> Any:
        return {"backbeat": self.post, "bare-http": self.post_bare,
                "backbeat-client": self.enqueue, "bare": self.delay}[arm]

    def delay(self, title: str) -> str:
        """bare: ``post.delay`` with the same params and a callback URL of the same shape."""
        job_id = uuid.uuid4().hex
        self.bare.post.delay(job_id, {**PARAMS, "title": title},
                             f"{self.callback_base}{job_id}?sig={self.sig}")
        return job_id

    # completion

    def done(self, arm: str) -> int:
        if arm.startswith("backbeat"):
            return int(self.redis.zcard(f"{PREFIX}:state:submitted"))
        return int(self.bare_redis.get(f"{BARE_PREFIX}:done") or 0)

    def is_done(self, arm: str, job_id: str) -> bool:
        if arm.startswith("backbeat"):
            return self.redis.hget(f"{PREFIX}:job:{job_id}", "state") == "submitted"
        return bool(self.bare_redis.exists(f"{BARE_PREFIX}:job:{job_id}"))


# -- throughput ----------------------------------------------------------------------------------


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> int:
    """utime + stime of one process so far, in clock ticks (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def _groups(arms: Arms) -> dict[str, list[int]]:
    """Process groups whose CPU is counted: component -> pids (main process and children)."""
    def tree(proc: Proc) -> list[int]:
        return [proc.popen.pid, *_children(proc.popen.pid)]

    assert arms.fleet is not None and arms.stack.sim is not None
    out = {"backbeat web (gunicorn)": tree(next(p for p in arms.procs if p.name == "pipeline-web")),
           "backbeat worker node, main process": [p.popen.pid for p in arms.fleet.procs],
           "backbeat worker node, pool processes": [x for p in arms.fleet.procs
                                                    for x in _children(p.popen.pid)],
           "bare web (gunicorn)": tree(next(p for p in arms.procs
                                            if p.name == "pipeline-bare-web")),
           "bare worker node, main process": [p.popen.pid for p in arms.procs
                                              if p.name.startswith("bare")],
           "bare worker node, pool processes": [x for p in arms.procs
                                                if p.name.startswith("bare")
                                                for x in _children(p.popen.pid)],
           "redis-server": [arms.stack.redis_proc.popen.pid] if arms.stack.redis_proc else [],
           "simulator": [arms.stack.sim.proc.popen.pid]}
    return out


def _cpu(arms: Arms) -> dict[str, float]:
    """CPU seconds so far of each component; the bench process (producer threads, polls) too."""
    out = {name: sum(_ticks(pid) for pid in pids) / CLK_TCK
           for name, pids in _groups(arms).items()}
    t = os.times()
    out["bench process (producer threads)"] = t.user + t.system
    return out


def _produce(arms: Arms, arm: str, n: int) -> tuple[list[threading.Thread], list, list]:
    """Start ENQUEUE_THREADS threads sending ``n`` jobs of ``arm``; (threads, errors, the
    perf_counter each thread finished at)."""
    send = arms.send(arm)
    titles = [arms.title(arm) for _ in range(n)]
    errors: list[BaseException] = []
    finished: list[float] = []

    def produce(part: list[str]) -> None:
        try:
            for title in part:
                send(title)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finished.append(time.perf_counter())

    threads = [threading.Thread(target=produce, args=(titles[k::ENQUEUE_THREADS],))
               for k in range(ENQUEUE_THREADS)]
    for t in threads:
        t.start()
    return threads, errors, finished


def _wait_done(arms: Arms, arm: str, target: int, n: int, errors: list) -> int:
    """Poll until ``target`` jobs of ``arm`` are done; returns the polls made."""
    polls = 0
    deadline = time.monotonic() + 60 + n / 5
    while True:
        polls += 1
        if arms.done(arm) >= target:
            return polls
        if errors:
            raise RuntimeError(f"{arm} producer failed: {errors[0]!r}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arm}: {arms.done(arm)} of {target} jobs done in time")
        time.sleep(POLL_S)


def _throughput(arms: Arms, arm: str, n: int) -> dict[str, float]:
    """End to end: N jobs from the producer threads while the workers run; (first enqueue ->
    last state in Redis)."""
    before = arms.done(arm)
    cpu0 = _cpu(arms)
    start = time.perf_counter()
    threads, errors, finished = _produce(arms, arm, n)
    polls = _wait_done(arms, arm, before + n, n, errors)
    end = time.perf_counter()
    for t in threads:
        t.join(30)
    cpu1 = _cpu(arms)
    return {"rate": n / (end - start), "seconds": end - start,
            "enqueue_rate": n / (max(finished) - start), "polls": polls,
            "cpu": {k: cpu1[k] - cpu0[k] for k in cpu1}}


def _split(arms: Arms, arm: str, n: int) -> dict[str, float]:
    """Producer and workers apart: the arm's worker nodes stopped (SIGSTOP), N jobs enqueued
    (the producer alone), the nodes continued (SIGCONT) and timed draining the backlog."""
    procs = (arms.fleet.procs if arm.startswith("backbeat") and arms.fleet is not None
             else [p for p in arms.procs if p.name.startswith("bare")])
    before = arms.done(arm)
    for proc in procs:
        proc.signal(signal.SIGSTOP)
    try:
        start = time.perf_counter()
        threads, errors, finished = _produce(arms, arm, n)
        for t in threads:
            t.join(60 + n / 5)
        if errors:
            raise RuntimeError(f"{arm} producer failed: {errors[0]!r}")
        enqueued = time.perf_counter()
    finally:
        for proc in procs:
            proc.signal(signal.SIGCONT)
    _wait_done(arms, arm, before + n, n, errors)
    end = time.perf_counter()
    return {"enqueue_rate": n / (enqueued - start), "drain_rate": n / (end - enqueued)}


def _commandstats(redis: Redis) -> dict[str, tuple[int, int]]:
    stats = redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in stats.items()}


# -- idle latency and enqueue cost ---------------------------------------------------------------


def _idle(arms: Arms, count: int, log: Log) -> dict[str, Any]:
    """One job at a time, the arms in turn (the order reversed every other round): enqueue
    stamp -> simulator arrival, the enqueue call's own cost, and enqueue -> state in Redis."""
    stamps: dict[str, dict[str, float]] = {a: {} for a in ARMS}
    calls: dict[str, list[float]] = {a: [] for a in ARMS}
    to_state: dict[str, list[float]] = {a: [] for a in ARMS}
    for k in range(count):
        for arm in (ARMS if k % 2 == 0 else ARMS[::-1]):
            title = arms.title(arm)
            t0, p0 = time.time(), time.perf_counter()
            job_id = arms.send(arm)(title)
            calls[arm].append(time.perf_counter() - p0)
            stamps[arm][title] = t0
            deadline = time.monotonic() + 15
            while not arms.is_done(arm, job_id):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{arm} job {job_id} not done in 15 s")
                time.sleep(0.001)
            to_state[arm].append(time.perf_counter() - p0)
            time.sleep(0.05)  # idle again: the pool process back waiting on the broker
    ledger = {c.get("title"): c for c in arms.stack.sim.calls()}
    latency: dict[str, list[float]] = {}
    for arm, by_title in stamps.items():
        latency[arm] = [(ledger[t]["wall"] - t0) for t, t0 in by_title.items() if t in ledger]
        if len(latency[arm]) < len(by_title):
            log(f"  {arm}: {len(by_title) - len(latency[arm])} idle jobs missing in the ledger")
    return {"latency": latency, "calls": calls, "to_state": to_state}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# -- profile passes ------------------------------------------------------------------------------


def _script_names() -> dict[str, str]:
    from backbeat.workers import scripts

    return {hashlib.sha1(scripts.source(n).encode()).hexdigest(): n for n in scripts.NAMES}


def _slowlog_pass(arms: Arms, arm: str, n: int) -> dict[str, Any]:
    """One end-to-end run with every command in the slow log (threshold 0). Returns
    ``top``: top-level name (EVALSHA by script) -> [calls, usec], and ``inner``: script ->
    Counter of the commands it ran (logged before their EVALSHA, client ``?:0``)."""
    r = arms.redis
    old = r.config_get("slowlog-*")
    size = n * 120 + 10_000
    r.config_set("slowlog-max-len", str(size))
    r.slowlog_reset()
    r.config_set("slowlog-log-slower-than", "0")
    try:
        _throughput(arms, arm, n)
    finally:
        r.config_set("slowlog-log-slower-than", old.get("slowlog-log-slower-than", "10000"))
        entries = r.slowlog_get(size)
        r.slowlog_reset()
        r.config_set("slowlog-max-len", old.get("slowlog-max-len", "128"))
    names = _script_names()
    top: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    inner: dict[str, Counter[str]] = defaultdict(Counter)
    pending: Counter[str] = Counter()
    for e in sorted(entries, key=lambda e: e["id"]):
        cmd = e["command"]
        parts = (cmd.decode(errors="replace") if isinstance(cmd, bytes) else str(cmd)).split()
        if not parts:
            continue
        name = parts[0].lower()
        addr = e.get("client_address", b"")
        if (addr.decode() if isinstance(addr, bytes) else str(addr)) == "?:0":
            pending[name.upper()] += 1  # run by a script: counted with it
            continue
        if name in ("evalsha", "eval") and len(parts) > 1:
            # acquire.lua is loaded with a per-process first line (limiter.py): its own sha
            name = f"evalsha {names.get(parts[1], 'acquire')}"
            inner[name] += pending
            inner[name]["calls"] += 1
        pending = Counter()
        if name.startswith(("slowlog", "config")):
            continue
        top[name][0] += 1
        top[name][1] += int(e["duration"])
    return {"top": {k: (v[0], v[1]) for k, v in top.items()}, "inner": dict(inner)}


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a celery worker's pool, gunicorn's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _frame(text: str) -> tuple[str, str]:
    """py-spy's ``func (file:line)`` -> (func, file)."""
    func, _, where = text.rpartition(" (")
    return func, where.rsplit(":", 1)[0]


#: (step, test on (func, file)); a sample goes to the step of its innermost matching frame
RULES: list[tuple[str, Any]] = [
    ("logging", lambda f, p: p.startswith("logging/") or p == "config/logging.py"),
    ("provider POST (requests -> simulator)", lambda f, p: f.startswith("ProviderClient.")
     or p.startswith(("requests/", "urllib3/", "http/client.py"))),
    ("limiter acquire (choose, acquire.lua)", lambda f, p: f in (
        "Limiter.try_acquire", "choose", "try_accounts")),
    ("limiter report (report.lua)", lambda f, p: f in ("Limiter.report", "Limiter._run_report")),
    ("transition (transition.lua)", lambda f, p: f == "JobStore.transition"),
    ("store.get (HGETALL + Job)", lambda f, p: f == "JobStore.get"),
    ("lease release (task end)", lambda f, p: f in ("Leases.release", "release_lease")),
    ("lease take (task_received)", lambda f, p: f in ("Leases.take", "_on_task_received")),
    ("submit_job other", lambda f, p: f == "submit_job"),
    ("create_job.lua (JobStore.create)", lambda f, p: f == "JobStore.create"),
    ("validation (load_job_request)", lambda f, p: f == "load_job_request"
     or p in ("workers/schemas.py", "provider/params.py")),
    ("Celery send_task (kombu publish + sent event)", lambda f, p: f == "send_submit"),
    ("outbox ZREM (dispatched)", lambda f, p: f == "JobStore.dispatched"),
    ("lanes check (SCARD, ZCARD, LLEN)", lambda f, p: f == "send_or_admit"),
    ("jobs.enqueue other (idem EXISTS)", lambda f, p: f == "enqueue" and p == "workers/jobs.py"),
    ("auth (require_token)", lambda f, p: f == "require_token"),
    ("bare task: state write (HSET+INCR)", lambda f, p: p == "pipeline_bare.py"),
    # libraries: a sample in none of the steps above
    ("flask-smorest / marshmallow (request, response)", lambda f, p: p.startswith((
        "flask_smorest/", "marshmallow/", "webargs/", "api/schemas.py"))),
    ("Flask / werkzeug", lambda f, p: p.startswith(("flask/", "werkzeug/"))),
    ("gunicorn", lambda f, p: p.startswith("gunicorn/")),

    ("Celery task trace", lambda f, p: p.startswith("celery/app/trace")),
    ("Celery events", lambda f, p: p.startswith("celery/events")),
    ("kombu (broker I/O, message)", lambda f, p: p.startswith("kombu/")),
    ("Celery / billiard other", lambda f, p: p.startswith(("celery/", "billiard/"))),
    ("redis-py", lambda f, p: p.startswith("redis/")),
]
#: RULES[:LIBRARY] are backbeat's own steps, the rest libraries
LIBRARY = next(k for k, (name, _) in enumerate(RULES) if name.startswith("flask-smorest"))
IDLE = "idle (waiting for work)"
#: leaf functions that mean 'waiting on a socket' (a Redis reply, the provider's answer)
WAITING = ("read_from_socket", "SocketIO.readinto", "_recv", "recv", "select", "poll")


def _classify(stack: str) -> tuple[str, bool]:
    frames = [_frame(x) for x in stack.split(";") if x]
    leaf = frames[-1][0] if frames else ""
    busy = any(f.endswith("trace_task") or f in ("Jobs.post", "Application.__call__")
               or p.startswith("flask/") for f, p in frames)
    waiting = any(w in leaf for w in WAITING)
    if not busy and waiting:
        return IDLE, True
    for rules in (RULES[:LIBRARY], RULES[LIBRARY:]):  # backbeat's steps before libraries'
        for f, p in reversed(frames):
            for name, test in rules:
                if test(f, p):
                    return name, waiting
    return "other", waiting


#: what py-spy samples: target -> (how to find the pids, wall clock with idle?)
TARGETS = {"pool": True, "main": False, "web": False}


def _pids(arms: Arms, arm: str) -> dict[str, list[int]]:
    if arm == "backbeat":
        assert arms.fleet is not None
        worker = next(p for p in arms.fleet.procs if p.name.startswith("worker"))
        web = next(p for p in arms.procs if p.name == "pipeline-web")
        return {"pool": _children(worker.popen.pid), "main": [worker.popen.pid],
                "web": _children(web.popen.pid)}
    bare = next(p for p in arms.procs if p.name.startswith("bare"))
    return {"pool": _children(bare.popen.pid), "main": [bare.popen.pid]}


def _pyspy(arms: Arms, arm: str, n: int, run_dir: Path, log: Log) -> dict[str, Any] | None:
    """py-spy record over one run of ``arm``: its pool processes wall clock (idle included),
    its worker main process and web processes on CPU only. None when py-spy cannot attach."""
    exe = venv_bin("py-spy")
    if not Path(exe).exists() and not shutil.which(exe):
        log("  py-spy not installed: no sampled profile")
        return None
    outs: list[tuple[str, Path]] = []
    procs: list[subprocess.Popen] = []
    for target, pids in _pids(arms, arm).items():
        for pid in pids:
            out = run_dir / f"pyspy-{arm}-{target}-{pid}.txt"
            outs.append((target, out))
            procs.append(subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--rate", str(PYSPY_RATE), "--nonblocking",
                 *(["--idle"] if TARGETS[target] else []), "--format", "raw", "--output",
                 str(out), "--duration", str(max(5, int(60 + n / 5)))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
    try:
        time.sleep(1.5)  # attached
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            err = dead[0].stderr.read().decode(errors="replace")[-300:] if dead[0].stderr else ""
            log(f"  py-spy could not attach: {err.strip()}")
            return None
        result = _throughput(arms, arm, n)
    finally:
        for p in procs:
            _stop(p)
    keep = os.environ.get("PIPELINE_KEEP_PROFILE")  # a directory: keep py-spy's raw output
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for _target, out in outs:
            if out.exists():
                shutil.copy(out, Path(keep) / out.name)
    steps: dict[str, Counter[str]] = defaultdict(Counter)
    waits: dict[str, Counter[str]] = defaultdict(Counter)
    for target, out in outs:
        if not out.exists():
            continue
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                step, waiting = _classify(stack)
                steps[target][step] += int(count)
                if waiting:
                    waits[target][step] += int(count)
    return {"steps": steps, "waits": waits, "run": result}


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)  # py-spy writes what it has
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


# -- run ---------------------------------------------------------------------------------------


def run(stack: Stack, quick: bool, log: Log) -> Section:
    n, pairs, idle = (200, 3, 20) if quick else (1000, 7, 60)
    stack.sim.reset(rate_limit=UNLIMITED, rate_window_s=1.0)
    run_dir = stack.run_dir / "pipeline"
    log(f"pipeline: {WORKERS} worker node(s) -c {CONCURRENCY} per arm, {n} jobs per run, "
        f"{pairs} pairs, {ENQUEUE_THREADS} producer threads; simulator unlimited, "
        "callbacks off, no beat")
    try:
        with Arms(stack, run_dir, log) as arms:
            return _measure(arms, n, pairs, idle, run_dir, log)
    finally:
        stack.clear_prefix(PREFIX)
        Redis(port=stack.redis_port, db=BARE_DB).flushdb()
        stack.sim.reset()


#: backbeat through HTTP, the bare task behind the same gunicorn flags, backbeat's Python client
#: in this process, the bare task's ``.delay`` in this process
ARMS = ("backbeat", "bare-http", "backbeat-client", "bare")
LABELS = {"backbeat": "backbeat, HTTP POST /v1/jobs",
          "bare-http": "bare task, HTTP POST /jobs (`.delay` behind gunicorn)",
          "backbeat-client": "backbeat, `Client.enqueue` in process",
          "bare": "bare task, `.delay` in process"}
#: the comparisons: backbeat's arm against the bare arm doing the same work; the first is the
#: goal's (HTTP enqueue, as the issue names it)
PAIRS = {"HTTP enqueue": ("backbeat", "bare-http"),
         "in-process enqueue": ("backbeat-client", "bare"),
         # not like for like: backbeat's HTTP front against the bare task sent in process (no
         # web at all), the comparison this benchmark made before the bare task had a web
         "HTTP vs .delay (unlike work)": ("backbeat", "bare")}
GOAL_PAIR = "HTTP enqueue"
#: the arms the Redis and py-spy profiles compare (the same Redis work as bare-http's)
PROFILED = ("backbeat", "bare")
METRICS = {"e2e": "end to end (enqueue while the workers run)",
           "enqueue": "producer alone (workers stopped), enqueues/s",
           "drain": "workers alone (draining N pre-queued), jobs/s"}


def _measure(arms: Arms, n: int, pairs: int, idle: int, run_dir: Path, log: Log) -> Section:
    for arm in ARMS:  # warm-up: connections, scripts, the pool processes' imports
        _throughput(arms, arm, 20)
    rates: dict[str, dict[str, list[float]]] = {m: {a: [] for a in ARMS} for m in METRICS}
    stats: dict[str, Counter[str]] = {a: Counter() for a in ARMS}
    usec: dict[str, Counter[str]] = {a: Counter() for a in ARMS}
    cpu: dict[str, Counter[str]] = {a: Counter() for a in ARMS}
    for p in range(pairs):
        for arm in (ARMS if p % 2 == 0 else ARMS[::-1]):
            arms.redis.config_resetstat()
            res = _throughput(arms, arm, n)
            for cmd, (calls, us) in _commandstats(arms.redis).items():
                stats[arm][cmd] += calls
                usec[arm][cmd] += us
            stats[arm]["zcard" if arm.startswith("backbeat") else "get"] -= int(res["polls"])
            cpu[arm].update(res["cpu"])
            split = _split(arms, arm, n)
            rates["e2e"][arm].append(res["rate"])
            rates["enqueue"][arm].append(split["enqueue_rate"])
            rates["drain"][arm].append(split["drain_rate"])
            log(f"  round {p + 1} {arm:15s} end to end {res['rate']:6.1f} jobs/s "
                f"({n} in {res['seconds']:.2f} s) | producer alone "
                f"{split['enqueue_rate']:6.1f}/s | workers alone {split['drain_rate']:6.1f} jobs/s")
    ratios = {(pair, m): [b / a for b, a in zip(v[ours], v[theirs], strict=True)]
              for pair, (ours, theirs) in PAIRS.items() for m, v in rates.items()}
    for (pair, m), r in ratios.items():
        log(f"ratio {pair} {m}: {statistics.median(r):.3f}x "
            f"(rounds {', '.join(f'{x:.3f}' for x in r)})")

    log(f"idle latency: {idle} jobs per arm, one at a time")
    lat = _idle(arms, idle, log)
    for arm in ARMS:
        v = lat["latency"][arm]
        log(f"  {arm:15s} enqueue -> provider call p50 {_pct(v, 0.5) * 1000:.1f} ms, "
            f"p99 {_pct(v, 0.99) * 1000:.1f} ms (n={len(v)})")
    log("profile: slow log at 0 us, one run per arm")
    slow = {arm: _slowlog_pass(arms, arm, n) for arm in PROFILED}
    log("profile: py-spy, one run per arm")
    spy = {arm: _pyspy(arms, arm, n, run_dir, log) for arm in PROFILED}
    return _section(n, pairs, rates, ratios, lat, stats, usec, slow, spy, cpu, log)


def _ms(samples: int, n: int) -> float:
    return samples / PYSPY_RATE / n * 1000


def _section(n: int, pairs: int, rates: dict, ratios: dict, lat: dict, stats: dict,
             usec: dict, slow: dict, spy: dict, cpu: dict, log: Log) -> Section:
    jobs = n * pairs
    cpu_tot = {a: sum(cpu[a].values()) / jobs * 1000 for a in ARMS}
    comps = sorted(set().union(*(cpu[a] for a in ARMS)),
                   key=lambda c: -(cpu["backbeat"][c] - cpu["bare"][c]))
    urows = [[c, *(f"{cpu[a][c] / jobs * 1000:.2f}" for a in ARMS)] for c in comps]
    urows.append(["**all**", *(f"**{cpu_tot[a]:.2f}**" for a in ARMS)])
    cpu_ratio = {pair: cpu_tot[theirs] / cpu_tot[ours] for pair, (ours, theirs) in PAIRS.items()}
    for row in urows:
        log("  cpu ms/job " + " | ".join(str(c) for c in row))
    for pair, r in cpu_ratio.items():
        log(f"CPU per job, {pair}: bare/backbeat = {r:.3f}x")
    cputab = table(["CPU per job, ms (utime+stime over the end-to-end runs)",
                    *(LABELS[a] for a in ARMS)], urows)
    med = {m: {a: statistics.median(v[a]) for a in ARMS} for m, v in rates.items()}
    ratio = statistics.median(ratios[(GOAL_PAIR, "e2e")])
    trows = []
    for pair, (ours, theirs) in PAIRS.items():
        for m, label in METRICS.items():
            r = ratios[(pair, m)]
            trows.append([f"{pair}: {label}", f"{med[m][ours]:.1f}", f"{med[m][theirs]:.1f}",
                          f"**{statistics.median(r):.2f}x**", ", ".join(f"{x:.2f}" for x in r)])
    throughput = table(["jobs/s (median of the rounds)", "backbeat", "bare Celery task",
                        "backbeat / bare (median of per-round ratios)", "per-round ratios"],
                       trows)
    lrows = []
    for arm in ARMS:
        v, st = lat["latency"][arm], lat["to_state"][arm]
        c = lat["calls"][arm]
        lrows.append([LABELS[arm], f"{_pct(v, 0.5) * 1000:.1f}", f"{_pct(v, 0.99) * 1000:.1f}",
                      f"{_pct(st, 0.5) * 1000:.1f}", f"{_pct(st, 0.99) * 1000:.1f}",
                      f"{statistics.median(c) * 1e6:,.0f}", f"{_pct(c, 0.99) * 1e6:,.0f}",
                      len(v)])
    lat_ratio = {}
    for pair, (ours, theirs) in PAIRS.items():
        bl, ba = lat["latency"][ours], lat["latency"][theirs]
        lat_ratio[pair] = (_pct(bl, 0.5) / _pct(ba, 0.5), _pct(bl, 0.99) / _pct(ba, 0.99))
        lrows.append([f"backbeat / bare, {pair}", f"{lat_ratio[pair][0]:.2f}x",
                      f"{lat_ratio[pair][1]:.2f}x", "", "", "", "", ""])
    latency = table(["idle, one job at a time", "enqueue -> provider call p50 ms", "p99 ms",
                     "enqueue -> state in Redis p50 ms", "p99 ms", "enqueue call p50 us",
                     "p99 us", "jobs"], lrows)

    cmds = sorted(set(stats["backbeat"]) | set(stats["bare"]),
                  key=lambda c: -(usec["backbeat"][c] + usec["bare"][c]))
    srows = []
    for c in cmds:
        b, a = stats["backbeat"][c] / jobs, stats["bare"][c] / jobs
        if b < 0.05 and a < 0.05:
            continue
        srows.append([c, f"{b:.2f}", f"{usec['backbeat'][c] / jobs:.1f}", f"{a:.2f}",
                      f"{usec['bare'][c] / jobs:.1f}"])
    cstats = table(["command (INFO commandstats, timed runs)", "backbeat calls/job",
                    "backbeat us/job", "bare calls/job", "bare us/job"], srows)

    tops = {arm: slow[arm]["top"] for arm in PROFILED}
    names = sorted(set(tops["backbeat"]) | set(tops["bare"]),
                   key=lambda c: -(tops["backbeat"].get(c, (0, 0))[1]))
    rows2 = []
    for c in names:
        b, a = tops["backbeat"].get(c, (0, 0)), tops["bare"].get(c, (0, 0))
        if b[0] / n < 0.05 and a[0] / n < 0.05:
            continue
        ran = slow["backbeat"]["inner"].get(c) or slow["bare"]["inner"].get(c) or Counter()
        calls_ = max(1, ran.get("calls", 1))
        inside = ", ".join(f"{k} {v / calls_:.1f}" for k, v in ran.most_common()
                           if k != "calls" and v / calls_ >= 0.05)
        rows2.append([c, f"{b[0] / n:.2f}", f"{b[1] / n:.1f}",
                      f"{b[1] / b[0]:.1f}" if b[0] else "-", f"{a[0] / n:.2f}",
                      f"{a[1] / n:.1f}", inside])
    top = {arm: (sum(v[0] for v in tops[arm].values()) / n,
                 sum(v[1] for v in tops[arm].values()) / n) for arm in PROFILED}
    rows2.append(["**all top-level**", f"{top['backbeat'][0]:.2f}", f"{top['backbeat'][1]:.1f}",
                  "", f"{top['bare'][0]:.2f}", f"{top['bare'][1]:.1f}", ""])
    for row in rows2:
        log(f"  slowlog {row[0]:32s} backbeat {row[1]:>5s}/job {row[2]:>7s} us/job | "
            f"bare {row[4]:>5s}/job {row[5]:>6s} us/job | {row[6]}")
    slowtab = table(["top-level command (SLOWLOG, EVALSHA by script)", "backbeat calls/job",
                     "backbeat us/job", "us/call", "bare calls/job", "bare us/job",
                     "commands inside, per call"], rows2)

    spytab, spynote = "", "- py-spy could not attach here: no sampled profile."
    if spy.get("backbeat") and spy.get("bare"):
        cols = [("backbeat", "pool"), ("backbeat", "main"), ("backbeat", "web"),
                ("bare", "pool"), ("bare", "main")]
        allsteps = set()
        for arm, target in cols:
            allsteps |= set(spy[arm]["steps"].get(target, {}))
        busy = {st: sum(spy[a]["steps"].get(t, Counter())[st] for a, t in cols[:3])
                for st in allsteps}
        prow = []
        for st in sorted(allsteps, key=lambda x: (x == IDLE, -busy[x])):
            row = [st]
            for arm, target in cols:
                c = spy[arm]["steps"].get(target, Counter())[st]
                w = spy[arm]["waits"].get(target, Counter())[st]
                cell = f"{_ms(c, n):.2f}" if c else "-"
                if c and target == "pool" and w and st != IDLE:
                    cell += f" ({_ms(w, n):.2f} waiting)"
                row.append(cell)
            prow.append(row)
        tot = ["**all but idle**"]
        for arm, target in cols:
            steps = spy[arm]["steps"].get(target, Counter())
            tot.append(f"{_ms(sum(c for st, c in steps.items() if st != IDLE), n):.2f}")
        prow.append(tot)
        for row in prow:
            log("  py-spy " + " | ".join(str(c) for c in row))
        spytab = table(["step (py-spy, ms per job)", "backbeat pool (wall)",
                        "backbeat worker main (not idle)", "backbeat web (not idle)",
                        "bare pool (wall)", "bare worker main (not idle)"], prow)
        spynote = (
            f"- py-spy at {PYSPY_RATE} Hz (`--nonblocking`) over one extra run of {n} jobs per "
            f"arm (backbeat {spy['backbeat']['run']['rate']:.0f}, bare "
            f"{spy['bare']['run']['rate']:.0f} jobs/s under the sampler): the pool processes "
            "with `--idle` (wall clock; '(x waiting)' = samples whose leaf is a socket read: "
            "a Redis reply or the provider's answer), the worker main process and gunicorn's "
            "workers without `--idle` (what py-spy does not take for idle: on CPU, waiting "
            "for the GIL or in a blocking read; summed over threads). The sampler slows the "
            "arms (see the rates): compare steps within a column, not with the CPU table. "
            "A sample counts in the step of its innermost matching frame (logging inside a "
            "transition counts as logging). ms per job = samples / "
            "rate / jobs, summed over a column's processes.")
    met = ratio >= TARGET
    parts = []
    for pair, (ours, theirs) in PAIRS.items():
        parts.append(
            f"{pair}: end to end backbeat {med['e2e'][ours]:.1f} jobs/s vs bare "
            f"{med['e2e'][theirs]:.1f}: **{statistics.median(ratios[(pair, 'e2e')]):.2f}x** "
            f"(CPU per job {cpu_ratio[pair]:.2f}x); producer alone "
            f"{statistics.median(ratios[(pair, 'enqueue')]):.2f}x, workers alone "
            f"{statistics.median(ratios[(pair, 'drain')]):.2f}x; idle enqueue -> provider "
            f"call p50 {lat_ratio[pair][0]:.2f}x, p99 {lat_ratio[pair][1]:.2f}x")
    summary = "\n- ".join(parts)
    log(summary.replace("**", ""))
    body = "\n".join([
        throughput, "", latency, "",
        f"- {summary}",
        f"- goal ({GOAL}), measured on the {GOAL_PAIR} pair (each side enqueues through HTTP, "
        f"as the goal names it): **{'met' if met else 'MISSED'}**; the in-process pair is "
        "shown beside it (backbeat's Python client against `.delay`), and so is backbeat "
        "through HTTP against `.delay` in process, which compares unlike work (a web tier on "
        "one side only) and was this benchmark's headline before the bare task had a web.",
        "- CPU per job, all processes of the run, is the throughput ratio of a CPU-bound "
        "machine and much steadier than jobs/s on a shared one (table below).",
        f"- {WORKERS} worker node `-c {CONCURRENCY}` per worker fleet (backbeat: the "
        "Procfile's worker line, all four queues; bare: the same flags, one queue); webs: "
        "gunicorn, 2 processes x 8 threads (the Procfile's web line) for backbeat's "
        "`create_app()` and for the bare front (`tests/bench/pipeline_bare.py`: a Flask route "
        "that calls `.delay`, no field checks, no auth); producers: "
        f"{ENQUEUE_THREADS} threads in the bench process; simulator unlimited, no callbacks, "
        "no beat; job = `add-instrumental`, with an Idempotency-Key for backbeat; "
        f"{pairs} rounds of {n} jobs per arm, the order of the four arms reversed every other "
        "round.",
        "- end to end = N / (first enqueue -> last job's state in Redis) with the workers "
        "running; producer alone = N / enqueue time with the arm's worker node stopped "
        "(SIGSTOP); workers alone = N / time to drain those N once it continues (SIGCONT).",
        "- idle latency: `time.time()` before the enqueue call to the simulator's `wall` "
        "stamp of the call; to state in Redis: until this process sees the state (1 ms polls); "
        "enqueue call: the producer's call alone.",
        "",
        cputab, "",
        "- each component's processes (main and children) read from /proc before and after "
        "each end-to-end run; the idle fleets' processes count in the running arm's column too "
        "(their idle cost); the bench process is every arm's producer (HTTP client, "
        "`Client.enqueue` or `.delay`) and poller.",
        "",
        f"The profiles below compare {PROFILED[0]} ({LABELS[PROFILED[0]]}) with {PROFILED[1]} "
        f"({LABELS[PROFILED[1]]}). Redis per job (INFO commandstats over the end-to-end runs, "
        "this process's completion "
        "polls subtracted; commands inside scripts count under their own names too, and in "
        "the EVALSHA's us):",
        "",
        cstats, "",
        "Top-level Redis commands per job, EVALSHA by script (SLOWLOG at 0 us over one extra "
        "end-to-end run per arm; us as Redis measures the command):",
        "",
        slowtab, "",
        spytab, "",
        spynote,
    ])
    return Section("pipeline", "Pipeline overhead (end to end vs a bare Celery task)", GOAL,
                   body, met=met)


if __name__ == "__main__":  # pragma: no cover - the runner is tests/bench/run.py
    sys.exit("run through tests/bench/run.py --only pipeline")
