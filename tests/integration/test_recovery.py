"""Back in motion on the shipped defaults: whole worker nodes SIGKILLed, rolling restarts.

Every fleet here runs with nothing tuned (``defaults=True``: the visibility timeout is 3600 s,
the uncertain grace 300 s, the read timeout 30 s ...); only the connection is configured.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from backbeat.workers.runtime import Runtime
from backbeat.workers.states import TERMINAL

pytestmark = pytest.mark.integration

#: the promise: a job a dead node held is moving again this soon after the death, in seconds
RECOVERY_BOUND_S = 45.0


def params(n: int) -> dict[str, Any]:
    return {"uploadUrl": f"https://example.com/r/{n}.mp3", "title": f"recovery {n}",
            "tags": "ambient", "negativeTags": "metal"}


def held_by(redis, prefix: str, node: str) -> dict[str, str]:
    """Jobs the node holds now (its leases), with their state."""
    held = [job for job, holder in redis.hgetall(f"{prefix}:lease-holders").items()
            if holder.split(" ", 1)[0] == node]
    return {job: redis.hget(f"{prefix}:job:{job}", "state") or "" for job in held}


def moved_again_after(client, job_id: str, t_s: float) -> float | None:
    """Seconds from ``t_s`` to the job's first history entry after it (a reclaim, a claim by
    another node, an adoption by callback ...), or None."""
    later = [e["t"] / 1000 for e in client.history(job_id) if e["t"] / 1000 >= t_s]
    return min(later) - t_s if later else None


def claimed_again_after(client, job_id: str, t_s: float) -> float | None:
    """Seconds from ``t_s`` until another worker claimed the job (or a callback adopted it)."""
    later = [e["t"] / 1000 for e in client.history(job_id) if e["t"] / 1000 >= t_s
             and e["reason"] in ("submit", "adopted from callback")]
    return min(later) - t_s if later else None


class HolderLog(threading.Thread):
    """Samples who holds which job (the lease holders) until stopped: {job: [(t, node)]}."""

    def __init__(self, redis, prefix: str) -> None:
        super().__init__(daemon=True)
        self.redis, self.key = redis, f"{prefix}:lease-holders"
        self.seen: dict[str, list[tuple[float, str]]] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            now = time.time()
            for job, holder in self.redis.hgetall(self.key).items():
                node = holder.split(" ", 1)[0]
                marks = self.seen.setdefault(job, [])
                if not marks or marks[-1][1] != node:
                    marks.append((now, node))

    def taken_over(self, job_id: str, old: str, after: float) -> float | None:
        """Seconds from ``after`` until another node than ``old`` held the job."""
        later = [t for t, node in self.seen.get(job_id, []) if t >= after and node != old]
        return min(later) - after if later else None


def wait_terminal(client, ids: list[str], bound_s: float) -> dict[str, dict[str, Any]]:
    deadline, jobs = time.monotonic() + bound_s, {}
    while time.monotonic() < deadline:
        jobs = {job_id: client.get(job_id) for job_id in ids}
        if all(j["state"] in TERMINAL for j in jobs.values()):
            return jobs
        time.sleep(1)
    states = [j["state"] for j in jobs.values()]
    raise AssertionError(f"not all terminal: { {s: states.count(s) for s in set(states)} }")


@pytest.mark.timeout(900)
def test_dead_nodes_jobs_move_again_within_45s_on_shipped_defaults(fleet, sim, redis, wait):
    """Given 60 jobs, three worker nodes as the Procfile runs them and nothing tuned, when three
    whole nodes are SIGKILLed mid-run (each replaced by a fresh node), expect every job each
    dead node held (prefetched, waiting for a token or mid-call) to move again within 45 s of
    the death, and all 60 to succeed, none lost, none paid twice."""
    sim.set_knobs(latency_ms=1000)  # calls take a second: some are in flight at each kill
    f = fleet("rc", workers=3, concurrency=4, web=True, defaults=True)
    assert f.settings.visibility_timeout_s == 3600 and f.settings.uncertain_grace_s == 300
    ids = [f.client.enqueue("add-instrumental", params(n))["id"] for n in range(60)]
    deaths: list[tuple[float, str, dict[str, str]]] = []
    for n in range(3):
        time.sleep(6)
        node = f"rc{n}@{os.uname().nodename}"
        proc = f.worker(n)
        held = held_by(redis, "rc", node)
        proc.signal(signal.SIGKILL)  # the whole node: main process and its pool processes
        died = time.time()
        proc.popen.wait(30)
        deaths.append((died, node, held))
        f.add_worker(n)
    for died, node, held in deaths:
        assert {"queued", "submitting"} & set(held.values()), f"{node} held no waiting job"
        for job_id, state in held.items():
            if state not in ("queued", "submitting"):  # its call was answered: nothing held
                continue
            # fail fast: without recovery these jobs would sit for the visibility timeout
            wait(lambda j=job_id, d=died: moved_again_after(f.client, j, d) is not None,
                 timeout=max(1.0, died + 2 * RECOVERY_BOUND_S - time.time()),
                 what=f"job {job_id} ({state} on {node}) moving again")
            moved = moved_again_after(f.client, job_id, died)
            assert moved <= RECOVERY_BOUND_S, (job_id, state, moved)

    jobs = wait_terminal(f.client, ids, bound_s=600)
    assert [j["state"] for j in jobs.values()].count("succeeded") == 60, jobs
    print("\nnode, state at death, moving again after (s), claimed again after (s):")
    for died, node, held in deaths:
        for job_id, state in held.items():
            if state in ("queued", "submitting"):
                moved = moved_again_after(f.client, job_id, died)
                claimed = claimed_again_after(f.client, job_id, died)
                claimed_s = "-" if claimed is None else f"{claimed:6.1f}"
                print(f"   {node} {state:10} {moved:6.1f} {claimed_s}")
    stats = sim.stats()
    assert stats["accepted"] == 60 and stats["duplicates_by_title"] == 0, stats


@pytest.mark.timeout(900)
def test_rolling_restart_drains_without_uncertainty_or_second_payment(fleet, sim, redis):
    """Given jobs flowing through three nodes on the shipped defaults, when each node in turn
    gets SIGTERM (as ``kubectl rollout restart`` sends) and is replaced, expect no job to
    become uncertain or be paid twice, and every job the node held to be claimed again no later
    than the restart itself."""
    sim.set_knobs(latency_ms=1500)  # a call is in flight at every SIGTERM
    f = fleet("rr", workers=3, concurrency=4, web=True, defaults=True)
    ids: list[str] = []
    producing = threading.Event()

    def produce() -> None:  # jobs keep arriving through the whole rollout
        for n in range(60):  # faster than the 20/10 s rule: a backlog builds up
            ids.append(f.client.enqueue("add-instrumental", params(n))["id"])
            time.sleep(0.2)
        producing.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    holders = HolderLog(redis, "rr")
    holders.start()
    restarts = []
    for n in range(3):
        time.sleep(4)
        node = f"rr{n}@{os.uname().nodename}"  # Celery's %h
        proc = f.worker(n)
        held = held_by(redis, "rr", node)
        os.kill(proc.popen.pid, signal.SIGTERM)  # the main process only, as Kubernetes does
        asked = time.time()
        proc.popen.wait(120)
        exited = time.time()
        f.add_worker(n, name=f"rr{n}b")  # the replacement pod: a new node name
        restarts.append((asked, exited, time.time(), node, held))
    producer.join(120)
    assert producing.is_set()
    jobs = wait_terminal(f.client, ids, bound_s=600)
    holders.stopped.set()

    assert [j["state"] for j in jobs.values()].count("succeeded") == 60, jobs
    stats = sim.stats()
    assert stats["accepted"] == 60 and stats["duplicates_by_title"] == 0, stats
    records = [Runtime(f.settings).store.get(job_id) for job_id in ids]
    assert not [r.id for r in records if r.get("uncertain")], "a job became uncertain"
    assert all(r.int("attempts") == 1 for r in records)
    print("\nnode, held, SIGTERM->exit (s), SIGTERM->replacement ready (s), "
          "held jobs taken over after (s):")
    for asked, exited, ready, node, held in restarts:
        # a queued job the draining node held is parked (waiting for a token) or put back by
        # kombu (prefetched): another node takes it, at the front of the line
        waits = {job_id: min(w for w in (holders.taken_over(job_id, node, asked),
                                         claimed_again_after(f.client, job_id, asked))
                             if w is not None)
                 for job_id, state in held.items() if state == "queued"}
        print("  ", node, len(held), round(exited - asked, 1), round(ready - asked, 1),
              sorted(round(w, 1) for w in waits.values()))
        for job_id, waited in waits.items():
            # the restart itself: from SIGTERM until the replacement node is ready
            assert waited <= ready - asked + 5, (job_id, waited)


@pytest.mark.timeout(300)
def test_a_live_node_keeps_its_leases_through_a_long_wait(fleet, sim, redis):
    """Given a job that waits longer than a lease lasts (25 s for its token under a 2/50 s
    rule, leases last 20 s), expect its live node's heartbeat to renew the lease: the job is
    never reclaimed, and is submitted once, by that node."""
    f = fleet("lw", workers=1, concurrency=2, defaults=True, BACKBEAT_SUBMIT_RATE="2/50s")
    first = f.client.enqueue("add-instrumental", params(1))["id"]
    second = f.client.enqueue("add-instrumental", params(2))["id"]
    for job_id in (first, second):
        assert f.client.wait(job_id, timeout=120)["state"] == "succeeded"
    # whichever of the two got the second token (both messages were taken at once)
    record = max((Runtime(f.settings).store.get(j) for j in (first, second)),
                 key=lambda r: r.int("submitting_at") - r.int("created_at"))
    waited_s = (record.int("submitting_at") - record.int("created_at")) / 1000
    assert waited_s > 20, waited_s  # it did wait longer than one lease
    assert record.int("reclaims") == 0, f.client.history(record.id)
    assert "from dead worker nodes" not in f.logs()
    assert sim.stats()["accepted"] == 2
