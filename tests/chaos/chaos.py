"""Chaos run: kill workers, restart Redis, fault the provider; count what the ledger saw.

Usage: ``python tests/chaos/chaos.py --jobs 2000 --kills 12 --json report.json`` (``make chaos``).
Everything runs on loopback and stops by itself: the producer, the kills and the final wait are
each bounded in count and time. The report counts, from the simulator's ledger and the job
store: jobs lost, duplicate paid submissions (and whether each is explained by a recorded
resubmission or duplicate), jobs finished and their final states.

``--profile defaults`` (the default) runs backbeat as a user would, with nothing tuned: every
timeout, delay and retry knob at its shipped value (visibility timeout 3600 s, uncertain grace
300 s, read timeout 30 s, ...); only the connection and the provider's rule are configured, and
the provider's "accepted, then no answer" fault outlasts the 30 s read timeout. ``--profile
fast`` is the earlier tuned run (visibility timeout 20 s, read timeout 2 s, grace 6 s, burst 5).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.devstack.processes import (
    Proc,
    beat_argv,
    free_port,
    start_redis,
    wait_http,
    web_argv,
    worker_argv,
)
from backbeat.simulator import SimConfig, SimServer
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import TERMINAL

#: a job acknowledged this long before Redis was killed must survive (appendfsync everysec)
FSYNC_BOUND_S = 1.5
#: ``--profile fast``: the knobs turned for speed (every other run uses the shipped defaults)
FAST_KNOBS = {
    "BACKBEAT_SUBMIT_BURST": "5", "BACKBEAT_POLL_RATE": "50/1s", "BACKBEAT_POLL_INTERVAL": "0.5",
    "BACKBEAT_POLL_MIN_DELAY": "1", "BACKBEAT_POLL_MAX_DELAY": "4", "BACKBEAT_READ_TIMEOUT": "2",
    "BACKBEAT_UNCERTAIN_GRACE": "6", "BACKBEAT_VISIBILITY_TIMEOUT": "20",
    "BACKBEAT_OUTBOX_GRACE": "5", "BACKBEAT_MAX_ATTEMPTS": "10", "BACKBEAT_BREAKER_BASE": "1",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=12, help="worker kills (SIGKILL)")
    ap.add_argument("--redis-restarts", type=int, default=1)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--rate", default="40/1s", help="provider rule and submit rate")
    ap.add_argument("--timeout", type=float, default=900, help="bound on the whole run (s)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", choices=("defaults", "fast"), default="defaults",
                    help="shipped defaults for every timeout, or the knobs turned for speed")
    ap.add_argument("--json", type=Path, help="write the report here too")
    args = ap.parse_args(argv)
    # SIGTERM unwinds through Chaos.run's ``finally``: every process it started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chaos = Chaos(args)
    report = chaos.run()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = report["lost"] == 0 and report["silent_duplicates"] == 0
    if ok:  # the process logs matter only when something went wrong
        shutil.rmtree(chaos.dir, ignore_errors=True)
    else:
        print(f"process logs kept in {chaos.dir}", file=sys.stderr)
    return 0 if ok else 1


class Chaos:
    """One bounded chaos run on its own Redis (AOF), simulator, web, workers and beat."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.dir = Path(tempfile.mkdtemp(prefix="backbeat-chaos-"))
        self.redis_port, self.web_port = free_port(), free_port()
        limit, _, window = args.rate.partition("/")
        self.rule = (int(limit), float(window.rstrip("s") or 1))
        self.sim = SimServer(SimConfig(
            profile="sunoapi", api_key=(key := f"chaos-{secrets.token_hex(8)}"),
            rate_limit=self.rule[0], rate_window_s=self.rule[1], text_after_s=0.3,
            first_after_s=0.6, complete_after_s=1.0, callback_backoff_scale=0.5,
            seed=args.seed))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BACKBEAT_")},
            "BACKBEAT_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "BACKBEAT_KEY_PREFIX": "chaos", "BACKBEAT_API_KEY": key,
            "BACKBEAT_PROVIDER": "sunoapi", "BACKBEAT_SECRET": secrets.token_hex(16),
            "BACKBEAT_CALLBACK_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            # the provider's rule, not a knob: the account's submit bucket is set to it
            "BACKBEAT_SUBMIT_RATE": args.rate,
            **(FAST_KNOBS if args.profile == "fast" else {}),
        }
        self.settings = Settings.from_env(self.env)
        #: the provider's "accepted, then no answer" fault: longer than the read timeout, so
        #: the call really ends uncertain
        self.accept_timeout_s = self.settings.read_timeout_s + 1
        self.procs: dict[str, Proc] = {}
        self.acked: dict[str, tuple[int, float]] = {}  # job id -> (index, wall time acked)
        self.redis_kills: list[float] = []
        self.kills = {"node": 0, "pool_process": 0}
        #: jobs per second the producer offers: 80% of the rule, so chaos spans the run
        self.paced_rate = 0.8 * self.rule[0] / self.rule[1]

    # -- processes ---------------------------------------------------------------------

    def start(self) -> None:
        self.sim.start()
        self.env["BACKBEAT_API_BASE_URL"] = self.sim.url
        self.procs["redis"] = start_redis(self.dir, self.redis_port, appendonly=True)
        self.procs["web"] = Proc.start("web", web_argv(self.web_port), self.env, self.dir)
        wait_http(f"http://127.0.0.1:{self.web_port}/healthz", 60)
        for n in range(self.args.workers):
            self.start_worker(n)
        self.procs["beat"] = Proc.start("beat", beat_argv(self.dir / "beat-schedule"),
                                        self.env, self.dir)

    def start_worker(self, n: int) -> None:
        proc = Proc.start(f"worker{n}", worker_argv(f"chaos{n}", concurrency=2), self.env,
                          self.dir)
        self.procs[f"worker{n}"] = proc
        proc.wait_for_log("ready.", 90)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop(timeout_s=10)
        self.sim.stop()

    # -- actors ------------------------------------------------------------------------

    def produce(self) -> None:
        """Enqueue every job with an idempotency key; retry through Redis outages."""
        client = Client(Settings.from_env(self.env))
        deadline = time.monotonic() + self.args.timeout / 2
        pace_s = 1 / self.paced_rate
        for n in range(self.args.jobs):
            time.sleep(pace_s)
            params = {"uploadUrl": f"https://example.com/chaos/{n}.mp3",
                      "title": f"chaos {n}", "tags": "noise", "negativeTags": "silence"}
            while time.monotonic() < deadline:
                try:
                    job = client.enqueue("add-instrumental", params, idempotency_key=f"c-{n}")
                    self.acked[job["id"]] = (n, time.time())
                    break
                except Exception:  # noqa: BLE001 - Redis restarting: retry, same key
                    time.sleep(0.2)

    def kill_workers(self, stop: threading.Event) -> None:
        """SIGKILL a worker node or one of its pool processes, then bring the node back."""
        per = self.args.jobs / self.paced_rate / (self.args.kills + 1)
        for k in range(self.args.kills):
            if stop.wait(per * self.rng.uniform(0.6, 1.4)):
                return
            n = self.rng.randrange(self.args.workers)
            proc = self.procs[f"worker{n}"]
            children = _children(proc.popen.pid)
            if k % 2 and children:
                os.kill(self.rng.choice(children), signal.SIGKILL)  # Celery replaces it
                self.kills["pool_process"] += 1
            else:
                proc.signal(signal.SIGKILL)
                proc.popen.wait(10)
                self.kills["node"] += 1
                self.start_worker(n)

    def restart_redis(self, at_fraction: float) -> None:
        while len(self.acked) < self.args.jobs * at_fraction:
            time.sleep(0.1)
        redis = self.procs["redis"]
        redis.signal(signal.SIGKILL)
        self.redis_kills.append(time.time())
        redis.popen.wait(10)
        time.sleep(0.5)
        self.procs["redis"] = start_redis(self.dir, self.redis_port, appendonly=True)

    # -- the run -----------------------------------------------------------------------

    def run(self) -> dict:
        started = time.monotonic()
        self.start()
        try:
            self.sim.set_knobs(server_error_rate=0.10, accept_timeout_rate=0.05,
                               accept_timeout_sleep_s=self.accept_timeout_s, drop_rate=0.03,
                               drop_after_accept=True, callback_loss_rate=0.10)
            stop = threading.Event()
            actors = [threading.Thread(target=self.produce, daemon=True),
                      threading.Thread(target=self.kill_workers, args=(stop,), daemon=True)]
            for i in range(self.args.redis_restarts):
                frac = (i + 1) / (self.args.redis_restarts + 1)
                actors.append(threading.Thread(target=self.restart_redis, args=(frac,),
                                               daemon=True))
            for t in actors:
                t.start()
            actors[0].join(self.args.timeout / 2)
            for t in actors[2:]:
                t.join(60)
            actors[1].join(max(1.0, self.args.timeout / 4))
            stop.set()
            self.wait_fraction_terminal(0.9, bound_s=self.args.timeout / 4)
            faults = self.sim.stats()
            self.sim.set_knobs(server_error_rate=0, accept_timeout_rate=0, drop_rate=0,
                               callback_loss_rate=0)
            jobs = self.settle(started)
            return self.report(jobs, faults, time.monotonic() - started)
        finally:
            self.stop()

    def wait_fraction_terminal(self, fraction: float, bound_s: float) -> None:
        """Keep the faults on until most jobs are done (or ``bound_s`` passes)."""
        redis = Runtime(Settings.from_env(self.env)).redis
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            try:
                done = redis.zcard("chaos:state:succeeded") + redis.zcard("chaos:state:failed")
            except Exception:  # noqa: BLE001 - Redis restarting
                done = 0
            if done >= fraction * len(self.acked):
                return
            time.sleep(1)

    def settle(self, started: float) -> dict[str, dict]:
        """Wait (bounded) until every acknowledged job that exists is terminal."""
        client = Client(Settings.from_env(self.env))
        deadline = started + self.args.timeout
        jobs: dict[str, dict] = {}
        while time.monotonic() < deadline:
            jobs = {}
            for job_id in self.acked:
                try:
                    jobs[job_id] = client.get(job_id)
                except Exception:  # noqa: BLE001 - missing: lost (counted below)
                    pass
            if all(j["state"] in TERMINAL for j in jobs.values()):
                break
            time.sleep(2)
        return jobs

    def report(self, jobs: dict[str, dict], faults: dict, elapsed: float) -> dict:
        kill_at = self.redis_kills
        in_window = {j for j, (_, t) in self.acked.items()
                     if any(0 <= k - t < FSYNC_BOUND_S for k in kill_at)}
        missing = [j for j in self.acked if j not in jobs]
        unfinished = [j for j, job in jobs.items() if job["state"] not in TERMINAL]
        lost = [j for j in missing if j not in in_window] + unfinished
        stats = self.sim.stats()
        by_title = {job["params"]["title"]: job for job in jobs.values()}
        duplicate_titles = stats["duplicate_titles"]
        explained = [t for t in duplicate_titles if t in by_title and (
            by_title[t]["duplicate_task_ids"] or _resubmits(self.env, by_title[t]["id"]))]
        states: dict[str, int] = {}
        for job in jobs.values():
            states[job["state"]] = states.get(job["state"], 0) + 1
        return {
            "jobs_enqueued": len(self.acked), "jobs_requested": self.args.jobs,
            "jobs_finished": sum(1 for j in jobs.values() if j["state"] in TERMINAL),
            "states": states,
            "lost": len(lost), "lost_ids": lost[:20],
            "missing_in_fsync_window": len([j for j in missing if j in in_window]),
            "duplicates_paid": stats["duplicates_by_title"],
            "duplicates_explained": len(explained),
            "silent_duplicates": stats["duplicates_by_title"] - len(explained),
            "worker_kills": self.kills, "redis_restarts": len(kill_at),
            "provider": {k: faults[k] for k in ("calls_total", "accepted", "server_errors",
                                                "timeouts_after_accept", "dropped",
                                                "throttled", "callbacks_lost")},
            "max_calls_in_window": stats["max_calls_in_window"], "rule": list(self.rule),
            "profile": self.args.profile,
            "settings": {"visibility_timeout_s": self.settings.visibility_timeout_s,
                         "uncertain_grace_s": self.settings.uncertain_grace_s,
                         "read_timeout_s": self.settings.read_timeout_s,
                         "submit_burst": self.settings.submit_burst},
            "elapsed_s": round(elapsed, 1),
        }


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _resubmits(env: dict, job_id: str) -> bool:
    from redis import Redis

    client = Redis.from_url(env["BACKBEAT_REDIS_URL"], decode_responses=True)
    return int(client.hget(f"chaos:job:{job_id}", "resubmits") or 0) > 0


if __name__ == "__main__":
    sys.exit(main())
