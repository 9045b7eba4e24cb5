"""Redis high availability on real engines: a primary, a replica and three ``redis-sentinel``
processes on loopback; the broker and the job store (and the limiter in it) on Sentinel URLs;
the primary SIGKILLed mid-run while producers keep enqueuing.

What it asserts, on counts from the job store and the simulator's ledger:

- every job acknowledged after the kill finishes (``succeeded``);
- every job acknowledged before the kill is present and finishes, except at most those
  acknowledged within ``REPLICATION_WINDOW_S`` before it (asynchronous replication: the primary
  answered before its replica had the write); those are counted and printed, never hidden;
- 0 paid duplicates at the simulator that the job store does not record;
- the old primary, restarted from its AOF, rejoins as a replica and jobs still flow.

The figures (failover time, jobs lost, duplicates) are printed as one ``SENTINEL FIGURES`` JSON
line; ``pytest tests/integration/test_sentinel.py -s`` shows it. docs/OPERATIONS.md quotes them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.devstack.processes import (
    Proc,
    free_port,
    start_redis,
    start_sentinel,
    wait_until,
)
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import TERMINAL

pytestmark = pytest.mark.integration

MASTER = "backbeat-ha"
#: a sentinel calls the primary subjectively down after this much silence
DOWN_AFTER_MS = 1500
FAILOVER_TIMEOUT_MS = 6000
#: a job acknowledged this long before the kill may be missing (not yet on the replica)
REPLICATION_WINDOW_S = 1.0
#: the producer's pace (4 jobs/s, well under the 10/s submit rate: the backlog of the outage
#: and of the limiter's post-failover fence drains while it keeps going)
PACE_S = 0.25
JOBS_BEFORE_KILL = 40
JOBS_AFTER_KILL = 60
REJOIN_JOBS = 10
#: bounds on every wait (generous: a noisy 2-core machine)
SETUP_S, PRODUCE_S, SETTLE_S = 90.0, 180.0, 240.0


@dataclass
class HA:
    """The Redis set: ports, processes and the two spellings of its Sentinel URL."""

    dir: Path
    primary_port: int
    replica_port: int
    sentinel_ports: list[int]
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/0?master_name={MASTER}"

    @property
    def broker_url(self) -> str:  # kombu's own spelling
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinel_ports) + (
            f"/0?master_name={MASTER}")

    def master_ports(self) -> list[int | None]:
        """The primary's port as each sentinel names it (None: unreachable or unknown)."""
        out: list[int | None] = []
        for port in self.sentinel_ports:
            try:
                with Redis(port=port, socket_timeout=1, socket_connect_timeout=1) as s:
                    # raw, as in sentinels_ready (redis-py 6.4's helper raises TypeError)
                    addr = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
                out.append(int(addr[1]) if addr else None)
            except Exception:  # noqa: BLE001 - a sentinel busy or gone: unknown
                out.append(None)
        return out

    def sentinels_ready(self) -> bool:
        """Every sentinel sees the primary, the replica and the two other sentinels (only then
        can they agree on a failover)."""
        for port in self.sentinel_ports:
            with Redis(port=port, socket_timeout=2, decode_responses=True) as s:
                # raw: redis-py 6.4's sentinel_master() passes an argument its own reply
                # parser does not take (TypeError) when called on a plain client
                flat = s.execute_command("SENTINEL", "MASTER", MASTER)
            state = dict(zip(flat[::2], flat[1::2], strict=True))
            if not (int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= 2
                    and int(state["port"]) == self.primary_port):
                return False
        return True


def _link_up(port: int, master_port: int) -> bool:
    try:
        with Redis(port=port, socket_timeout=2, decode_responses=True) as r:
            info = r.info("replication")
    except Exception:  # noqa: BLE001 - restarting
        return False
    return (info.get("role") == "slave" and int(info.get("master_port", 0)) == master_port
            and info.get("master_link_status") == "up")


@pytest.fixture
def ha(tmp_path: Path):
    """Primary + replica (both AOF, like deploy/redis.conf) + three sentinels (quorum 2), all
    on free loopback ports; every process stopped at the end, whatever happened."""
    if shutil.which("redis-sentinel") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-sentinel is required in CI (deploy/ensure-redis.sh installs it)")
        pytest.skip("redis-sentinel not installed: run deploy/ensure-redis.sh")
    ports = [free_port() for _ in range(5)]
    ha = HA(tmp_path / "ha", ports[0], ports[1], ports[2:])
    try:
        ha.procs["primary"] = start_redis(ha.dir, ha.primary_port, appendonly=True)
        ha.procs["replica"] = start_redis(
            ha.dir, ha.replica_port, appendonly=True,
            extra_args=("--replicaof", "127.0.0.1", str(ha.primary_port)))
        wait_until(lambda: _link_up(ha.replica_port, ha.primary_port), SETUP_S,
                   "replica in sync with the primary")
        for n, port in enumerate(ha.sentinel_ports):
            ha.procs[f"sentinel{n}"] = start_sentinel(
                ha.dir, port, MASTER, ha.primary_port, quorum=2, down_after_ms=DOWN_AFTER_MS,
                failover_timeout_ms=FAILOVER_TIMEOUT_MS)
        # sentinels learn replicas from the primary's INFO (every 10 s) and each other from
        # hello messages (every 2 s)
        wait_until(ha.sentinels_ready, SETUP_S, "sentinels see the replica and each other")
        yield ha
    finally:
        for proc in reversed(list(ha.procs.values())):
            proc.stop(timeout_s=10)


class Producer:
    """Enqueues at a steady pace with idempotency keys, retrying each job through the outage
    (same key, so a retry never makes a second job); records when each was acknowledged."""

    def __init__(self, settings: Settings, tag: str) -> None:
        self.client = Client(settings)
        self.tag = tag
        self.acked: dict[str, tuple[int, float]] = {}  # job id -> (n, wall time of the 202)
        self.errors = 0
        self.longest_retry_s = 0.0
        self.stop = threading.Event()
        self.failed: BaseException | None = None

    def run(self, count: int | None, deadline: float) -> None:
        n = 0
        try:
            while (count is None or n < count) and not self.stop.is_set():
                time.sleep(PACE_S)
                params = {"uploadUrl": f"https://example.com/ha/{self.tag}{n}.mp3",
                          "title": f"ha {self.tag}{n}", "tags": "failover",
                          "negativeTags": "silence"}
                first_try = time.monotonic()
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"job {self.tag}{n} not acknowledged before the "
                                           "producer's deadline")
                    try:
                        job = self.client.enqueue("add-instrumental", params,
                                                  idempotency_key=f"ha-{self.tag}{n}")
                        break
                    except Exception:  # noqa: BLE001 - primary gone: retry, same key
                        self.errors += 1
                        time.sleep(0.1)
                self.longest_retry_s = max(self.longest_retry_s, time.monotonic() - first_try)
                self.acked[job["id"]] = (n, time.time())
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.failed = exc

    def start(self, count: int | None, bound_s: float) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(count, time.monotonic() + bound_s),
                                  daemon=True)
        thread.start()
        return thread


def _read_all(client: Client, rt: Runtime, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every job of ``ids`` that exists, with its history (missing ones are left out)."""
    out = {}
    for job_id in ids:
        try:
            job = client.get(job_id)
        except Exception:  # noqa: BLE001 - JobNotFound: lost (counted by the caller)
            continue
        job["history"] = client.history(job_id)
        job["resubmits"] = int(rt.store.get(job_id).get("resubmits") or 0)
        out[job_id] = job
    return out


def _settle(client: Client, rt: Runtime, ids: list[str], bound_s: float
            ) -> dict[str, dict[str, Any]]:
    """Wait (bounded) until every job of ``ids`` that exists is terminal; return them all."""
    deadline = time.monotonic() + bound_s
    while True:
        try:
            jobs = _read_all(client, rt, ids)
        except Exception:  # noqa: BLE001 - Redis busy: try again
            jobs = {}
        if jobs and all(j["state"] in TERMINAL for j in jobs.values()):
            return jobs
        if time.monotonic() > deadline:
            return jobs
        time.sleep(1)


def _first_after(jobs: dict[str, dict[str, Any]], state: str, after: float) -> float | None:
    """Seconds from ``after`` to the first transition into ``state`` after it (Redis clock)."""
    times = [e["t"] / 1000 for j in jobs.values() for e in j["history"]
             if e["to"] == state and e["t"] / 1000 > after]
    return round(min(times) - after, 2) if times else None


def _log_excerpt(procs: list[Proc], lines: int = 40) -> str:
    """The last warnings and errors of the fleet's processes (for a failure message)."""
    found = [f"{p.name}: {line[:200]}" for p in procs for line in p.log_text().splitlines()
             if "ERROR" in line or "WARNING" in line]
    return "\n".join(found[-lines:])


@pytest.mark.slow  # a minute with its sentinels: make test-all (make test's budget is 15 min)
@pytest.mark.timeout(900)
def test_failover_keeps_jobs_flowing_and_loses_at_most_the_replication_lag(ha, fleet, sim):
    sim.set_knobs(rate_limit=10, rate_window_s=1.0)
    # the store (and limiter) on one spelling of the Sentinel URL, the broker on kombu's own
    f = fleet("ha", workers=2, concurrency=2, web=True,
              BACKBEAT_REDIS_URL=ha.store_url, BACKBEAT_BROKER_URL=ha.broker_url,
              BACKBEAT_SUBMIT_RATE="10/1s", BACKBEAT_SUBMIT_BURST="2",
              BACKBEAT_POLL_RATE="50/1s", BACKBEAT_VISIBILITY_TIMEOUT="30",
              BACKBEAT_OUTBOX_GRACE="5", BACKBEAT_MAX_ATTEMPTS="10")
    assert Runtime(f.settings).redis.connection_pool.service_name == MASTER
    started = time.monotonic()
    producer, rejoin = Producer(f.settings, "p"), Producer(f.settings, "r")
    try:
        # -- before the kill: a steady stream on the original primary
        thread = producer.start(None, PRODUCE_S)
        wait_until(lambda: len(producer.acked) >= JOBS_BEFORE_KILL or producer.failed,
                   PRODUCE_S, "jobs acknowledged before the kill")
        assert producer.failed is None, repr(producer.failed)
        # how far the replica is behind, read just before the kill (replica first, so this is
        # an upper bound: the primary's offset also counts what it wrote between the reads)
        with Redis(port=ha.replica_port) as r, Redis(port=ha.primary_port) as p:
            replica_offset = r.info("replication")["slave_repl_offset"]
            primary_offset = p.info("replication")["master_repl_offset"]

        # -- SIGKILL the primary mid-run; the producer keeps going
        ha.procs["primary"].signal(signal.SIGKILL)
        killed_at = time.time()
        acked_at_kill = len(producer.acked)
        ha.procs["primary"].popen.wait(10)
        wait_until(lambda: ha.master_ports().count(ha.replica_port) >= 2, SETUP_S,
                   "a quorum of sentinels names the replica as the primary")
        switched_s = round(time.time() - killed_at, 2)
        wait_until(lambda: producer.failed or sum(
            t > killed_at for _, t in producer.acked.values()) >= JOBS_AFTER_KILL,
            PRODUCE_S, "jobs acknowledged after the kill")
        producer.stop.set()
        thread.join(PRODUCE_S)
        assert producer.failed is None, repr(producer.failed)

        # -- the old primary comes back from its AOF: the sentinels make it a replica of the
        # new one, and jobs enqueued afterwards flow as well
        ha.procs["old-primary"] = start_redis(ha.dir, ha.primary_port, appendonly=True)
        wait_until(lambda: _link_up(ha.primary_port, ha.replica_port), SETUP_S,
                   "old primary rejoined as a replica of the new one")
        rejoin.run(REJOIN_JOBS, time.monotonic() + PRODUCE_S)
        assert rejoin.failed is None, repr(rejoin.failed)
    finally:
        producer.stop.set()

    # -- settle and count
    acked = {**producer.acked, **rejoin.acked}
    jobs = _settle(f.client, Runtime(f.settings), list(acked), SETTLE_S)
    in_window = {j for j, (_, t) in acked.items() if 0 <= killed_at - t < REPLICATION_WINDOW_S}
    before = [j for j, (_, t) in acked.items() if t <= killed_at]
    after = [j for j, (_, t) in acked.items() if t > killed_at]
    missing = [j for j in acked if j not in jobs]
    lost_in_window = [j for j in missing if j in in_window]
    lost_outside = [j for j in missing if j not in in_window]
    not_succeeded = {j: jobs[j]["state"] for j in jobs if jobs[j]["state"] != "succeeded"}
    stats = sim.stats()
    by_title = {job["params"]["title"]: job for job in jobs.values()}
    silent = [t for t in stats["duplicate_titles"] if not (
        t in by_title and (by_title[t]["duplicate_task_ids"] or by_title[t]["resubmits"]))]
    figures = {
        "jobs_acknowledged": len(acked), "before_kill": len(before), "after_kill": len(after),
        "of_which_after_old_primary_rejoined": len(rejoin.acked), "acked_at_kill": acked_at_kill,
        "replica_behind_bytes_at_kill_at_most": max(0, primary_offset - replica_offset),
        "acked_within_window_before_kill": len(in_window),
        "lost_within_replication_window": len(lost_in_window),
        "lost_outside_window": len(lost_outside),
        "not_succeeded": len(not_succeeded),
        "failover_s": {
            "kill_to_sentinel_switch": switched_s,
            "kill_to_first_enqueue_acknowledged": round(
                min(t for _, t in producer.acked.values() if t > killed_at) - killed_at, 2),
            "kill_to_first_job_claimed": _first_after(jobs, "submitting", killed_at),
            "kill_to_first_job_succeeded": _first_after(jobs, "succeeded", killed_at),
        },
        "producer_retries": producer.errors,
        "producer_longest_wait_s": round(producer.longest_retry_s, 2),
        "paid_duplicates": stats["duplicates_by_title"], "silent_duplicates": len(silent),
        "provider_accepted": stats["accepted"], "provider_throttled": stats["throttled"],
        "max_calls_in_any_1s_window": stats["max_calls_in_window"], "rule": "10/1s",
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print("\nSENTINEL FIGURES " + json.dumps(figures))

    detail = json.dumps({"figures": figures, "lost": lost_outside[:10],
                         "not_succeeded": dict(list(not_succeeded.items())[:10]),
                         "silent_titles": silent[:10]}) + "\n" + _log_excerpt(f.procs)
    # titles past the ledger's list cap would go unchecked: there must be none
    assert len(stats["duplicate_titles"]) == stats["duplicates_by_title"], detail
    assert after and all(j in jobs for j in after), detail
    assert not lost_outside, detail
    assert not not_succeeded, detail
    assert not silent, detail
    assert figures["failover_s"]["kill_to_first_job_claimed"] is not None, detail
