"""The fleet split into pools: each Procfile worker-* line consumes one queue, and a slow queue
starves no other.

The pools are started the way the container image starts them (deploy/backbeat-run running the
Procfile's own lines), one process each, against the test Redis and the simulator. No web runs
for this fleet, so provider callbacks never land: a job can only finish through the reconcile
pool's polls, and what delays those polls shows.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from backbeat.devstack.processes import Proc, procfile_command
from backbeat.workers import webhooks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
#: a generous bound for each wait (the machine is shared and noisy)
WAIT_S = 90.0
#: each pool and the tasks only it may run (the first one runs within the test, surely)
POOLS = {"worker-submit": ("backbeat.submit",), "worker-reconcile": ("backbeat.reconcile",),
         "worker-housekeeping": ("backbeat.pump", "backbeat.housekeep"),
         "worker-notify": ("backbeat.notify",)}


class SilentReceiver:
    """A webhook receiver that accepts every connection and never answers: each delivery to it
    holds its worker process for the whole read timeout (webhooks.TIMEOUT_S)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted: list[tuple[float, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append((time.monotonic(), conn))

    def close(self) -> None:
        self.sock.close()
        for _, conn in self.accepted:
            conn.close()


@pytest.mark.slow  # make test-all: keeps make test inside 15 minutes
def test_pools_split_the_work_and_a_stuck_webhook_delays_no_poll(fleet, tmp_path, wait,
                                                                 payload):
    """Given the four pools of the Procfile (one process each) and beat, when jobs with a
    notify_url whose receiver never answers succeed, expect each task run by its own pool only,
    and, while a webhook delivery is stuck, new jobs polled to `succeeded` as fast as ever:
    within the stuck delivery's own 10 s (routed to the reconcile pool, it would hold the pool's
    one process for 10 s per delivery). Last, the pools answer their Kubernetes liveness probe."""
    silent = SilentReceiver()
    f = fleet("pools", workers=0, BACKBEAT_WEBHOOK_ALLOW_PRIVATE="true")
    try:
        started = []
        for name in POOLS:
            argv, env = procfile_command(PROCFILE, name, {**f.env, "WORKER_CONCURRENCY": "1",
                                                          "TMPDIR": str(tmp_path)})
            proc = Proc.start(name, argv, env, f.run_dir)
            f.procs.append(proc)
            started.append(proc)
        for proc in started:
            proc.wait_for_log("ready.", WAIT_S)

        # end to end with the pools split: submit, polls, the pump, webhooks in their own pools
        notified = [f.client.enqueue("add-vocals", payload.vocals(f"Pool {n}"),
                                     notify_url=silent.url)["id"] for n in range(3)]
        assert {j["state"] for j in f.wait_all(notified)} == {"succeeded"}

        # wait for a delivery to start (the receiver accepts it), then run new jobs at once:
        # that delivery holds its process for webhooks.TIMEOUT_S from now on
        seen = len(silent.accepted)
        wait(lambda: len(silent.accepted) > seen, what="a webhook delivery started")
        stuck_at = silent.accepted[seen][0]
        fresh = [f.client.enqueue("add-vocals", payload.vocals(f"Fresh {n}"))["id"]
                 for n in range(2)]
        assert {j["state"] for j in f.wait_all(fresh)} == {"succeeded"}
        done_after_s = time.monotonic() - stuck_at
        assert done_after_s < webhooks.TIMEOUT_S, (
            f"polls waited behind a stuck webhook: new jobs done {done_after_s:.1f} s after "
            f"the delivery started")
        assert all(f.client.get(j)["notify"]["state"] != "delivered" for j in notified)

        logs = {p.name: p.log_text(own=True) for p in started}
        for name, tasks in POOLS.items():
            assert f"Task {tasks[0]}[" in logs[name], f"{name} never ran {tasks[0]}"
            for other, other_tasks in POOLS.items():
                for task in other_tasks if other != name else ():
                    assert f"Task {task}[" not in logs[name], f"{name} ran {task}"

        # the liveness probe of deploy/k8s, run as the kubelet would in the pod
        manifest = yaml.safe_load((ROOT / "deploy" / "k8s" / "worker-submit.yaml").read_text())
        probe = manifest["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
        _, env = procfile_command(PROCFILE, "worker-submit", f.env)
        result = subprocess.run(probe["exec"]["command"], capture_output=True, text=True,
                                timeout=60, env={**env, "HOSTNAME": socket.gethostname()})
        assert result.returncode == 0 and "pong" in result.stdout, result.stdout + result.stderr
    finally:  # the fleet fixture stops the pools; closed, the receiver lets them stop at once
        silent.close()
