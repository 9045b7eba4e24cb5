"""``backbeat demo``: the whole system on loopback against the simulator, with a small batch."""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from pathlib import Path

import click
import requests

from ..provider.profiles import JOB_TYPES, PROFILES
from ..workers.states import TERMINAL
from .processes import (
    Proc,
    beat_argv,
    celery_argv,
    free_port,
    start_redis,
    venv_bin,
    wait_http,
    web_argv,
    worker_argv,
)

#: the fields each job type of JOB_TYPES needs besides the common ones (a type missing here is a
#: KeyError naming it)
_TYPE_PARAMS = {
    "add-instrumental": {"tags": "warm, acoustic, folk", "vocalGender": "f"},
    "add-vocals": {"prompt": "[Verse] city lights hum along", "style": "Jazz"},
}


def _kind(n: int) -> str:
    """The job type of the demo's ``n``-th job: the types of JOB_TYPES in turn."""
    return JOB_TYPES[n % len(JOB_TYPES)]


def _params(kind: str, n: int) -> dict:
    common = {"uploadUrl": f"https://example.com/stems/take-{n}.mp3",
              "title": f"Demo {kind} #{n}", "negativeTags": "harsh noise",
              "styleWeight": 0.6, "audioWeight": 0.65}
    return {**common, **_TYPE_PARAMS[kind]}


@click.command()
@click.option("--jobs", "count", type=int, default=24, show_default=True,
              help="How many jobs (each job type in turn).")
@click.option("--provider", type=click.Choice(sorted(PROFILES)), default="sunoapi",
              show_default=True)
@click.option("--timeout", type=float, default=180, show_default=True)
@click.option("--flower/--no-flower", default=True, show_default=True)
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(".run/demo"))
def demo(count: int, provider: str, timeout: float, flower: bool, run_dir: Path) -> None:
    """Start redis, simulator, web, worker, beat (and flower); enqueue a batch; watch it finish."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("redis", "sim", "web", "flower")}
    api_key, token = f"demo-key-{secrets.token_hex(8)}", secrets.token_hex(12)
    env = {
        **os.environ,
        "BACKBEAT_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "BACKBEAT_PROVIDER": provider,
        "BACKBEAT_API_BASE_URL": f"http://127.0.0.1:{ports['sim']}",
        "BACKBEAT_API_KEY": api_key,
        "BACKBEAT_CALLBACK_BASE_URL": f"http://127.0.0.1:{ports['web']}",
        "BACKBEAT_SECRET": secrets.token_hex(16),
        "BACKBEAT_API_TOKENS": token,
        "BACKBEAT_POLL_MIN_DELAY": "3",
        "BACKBEAT_POLL_INTERVAL": "1",
    }
    os.environ.update(env)
    procs: list[Proc] = []
    try:
        click.echo(f"logs in {run_dir}/")
        procs.append(start_redis(run_dir, ports["redis"]))
        sim = Proc.start("sim", [venv_bin("backbeat"), "sim", "--port", str(ports["sim"]),
                                 "--profile", provider, "--stage-seconds", "1"], env, run_dir)
        procs.append(sim)
        web = Proc.start("web", web_argv(ports["web"]), env, run_dir)
        procs.append(web)
        worker = Proc.start("worker", worker_argv("demo", concurrency=4), env, run_dir)
        procs.append(worker)
        procs.append(Proc.start("beat", beat_argv(run_dir / "beat-schedule"), env, run_dir))
        if flower:
            procs.append(Proc.start("flower", celery_argv(
                "flower", f"--port={ports['flower']}", "--address=127.0.0.1"), env, run_dir))
        wait_http(f"http://127.0.0.1:{ports['sim']}/__health")
        wait_http(f"http://127.0.0.1:{ports['web']}/healthz")
        worker.wait_for_log("ready.", 90)
        click.echo(f"simulator ({provider}) http://127.0.0.1:{ports['sim']}  "
                   f"API http://127.0.0.1:{ports['web']}/openapi.json"
                   + (f"  flower http://127.0.0.1:{ports['flower']}" if flower else ""))
        ok = _run_batch(count, f"http://127.0.0.1:{ports['web']}", token, timeout)
        stats = requests.get(f"http://127.0.0.1:{ports['sim']}/__stats", timeout=5).json()
        click.echo(f"provider ledger: accepted={stats.get('accepted')} "
                   f"throttled={stats.get('throttled')} "
                   f"paid twice={stats.get('duplicates_by_title')} "
                   f"max calls in any {stats.get('rate_window_s')} s window="
                   f"{stats.get('max_calls_in_window')} (rule: {stats.get('rate_limit')})")
    finally:
        for proc in reversed(procs):
            proc.stop()
    leaked = [p.name for p in procs if api_key in p.log_text()]
    click.echo(f"provider key in any process log: {'YES ' + ','.join(leaked) if leaked else 'no'}")
    if not ok or leaked:
        raise SystemExit(1)


def _run_batch(count: int, api: str, token: str, timeout: float) -> bool:
    from ..api.client import Client

    client, auth = Client(), {"Authorization": f"Bearer {token}"}
    ids = []
    for n in range(count):
        kind = _kind(n)
        if n % 3 == 0:  # a third through the HTTP API, the rest through the Python client
            resp = requests.post(f"{api}/v1/jobs", headers=auth, timeout=10,
                                 json={"type": kind, "params": _params(kind, n)})
            resp.raise_for_status()
            ids.append(resp.json()["id"])
        else:
            ids.append(client.enqueue(kind, _params(kind, n), idempotency_key=f"demo-{n}")["id"])
    again = client.enqueue(_kind(1), _params(_kind(1), 1), idempotency_key="demo-1")
    click.echo(f"enqueued {len(ids)} jobs; replaying idempotency key demo-1 returned the same job: "
               f"{again['id'] == ids[1]}")
    bad = requests.post(f"{api}/v1/jobs", headers=auth, timeout=10, json={
        "type": _kind(1), "params": {"uploadUrl": "nope", "styleWeight": 0.123}})
    click.echo(f"an invalid request is refused with {bad.status_code}: "
               f"{bad.json().get('errors', {}).get('json')}")
    deadline, last = time.monotonic() + timeout, None
    while True:
        jobs = [client.get(i) for i in ids]
        states = Counter(j["state"] for j in jobs)
        line = "  ".join(f"{k}={v}" for k, v in sorted(states.items()))
        if line != last:
            click.echo(f"[{time.strftime('%H:%M:%S')}] {line}")
            last = line
        if all(j["state"] in TERMINAL for j in jobs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for job in jobs:
        tracks = len(job["tracks"])
        click.echo(f"  {job['id'][:12]} {job['type']:<16} {job['state']:<10} "
                   f"task={job['upstream_task_id'] or '-':<32} tracks={tracks}")
    succeeded = sum(1 for j in jobs if j["state"] == "succeeded")
    click.echo(f"{succeeded}/{len(jobs)} jobs succeeded")
    return succeeded == len(jobs)
