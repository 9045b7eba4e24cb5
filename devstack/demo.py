"""``backbeat demo``: the whole system on loopback against the simulator, with a small batch.

It starts Redis, the simulator, web, a worker, beat (and Flower) as child processes, runs the
batch under the live view (``api/live.py``), then, unless ``--exit``, leaves the system
running, prints where to look (status page, API, Flower, simulator) and keeps the view going
until Ctrl-C or SIGTERM. Whatever ends it, every child process is stopped before it exits.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
@click.option("--exit", "exit_after", is_flag=True,
              help="Stop everything once the batch is done (else it keeps running until "
                   "Ctrl-C).")
def demo(count: int, provider: str, timeout: float, flower: bool, run_dir: Path,
         exit_after: bool) -> None:
    """Start redis, simulator, web, worker, beat (and flower); run a batch under the live view;
    then keep it all running, with the URLs to look at, until Ctrl-C (or SIGTERM).

    Exit status: 0 every job succeeded and the provider key is in no log; 1 otherwise; 130
    interrupted before the batch was done.
    """
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
        "BACKBEAT_CREDITS_INTERVAL": "10",  # the balance shows within seconds
    }
    os.environ.update(env)
    procs: list[Proc] = []
    ok, batch_done, interrupted = False, False, False
    # Ctrl-C, and a supervisor's SIGTERM likewise, end the demo through the `finally` below
    # (SIGINT too is set: a shell starts a background job with it ignored)
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    try:
        click.echo(f"logs in {run_dir}/")
        with _signals_held():  # a child started is a child recorded, hence stopped
            procs.append(start_redis(run_dir, ports["redis"]))
        _start(procs, "sim", [venv_bin("backbeat"), "sim", "--port", str(ports["sim"]),
                              "--profile", provider, "--stage-seconds", "1"], env, run_dir)
        _start(procs, "web", web_argv(ports["web"]), env, run_dir)
        worker = _start(procs, "worker", worker_argv("demo", concurrency=4), env, run_dir)
        _start(procs, "beat", beat_argv(run_dir / "beat-schedule"), env, run_dir)
        if flower:
            _start(procs, "flower", celery_argv(
                "flower", f"--port={ports['flower']}", "--address=127.0.0.1"), env, run_dir)
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
        batch_done = True
        if not exit_after:
            web_url = f"http://127.0.0.1:{ports['web']}"
            click.echo("\nthe system keeps running:")
            click.echo(f"  status page  {web_url}/#token={token}")
            click.echo(f"  API          {web_url}/openapi.json  (Authorization: Bearer {token})")
            if flower:
                click.echo(f"  Flower       http://127.0.0.1:{ports['flower']}")
            click.echo(f"  simulator    http://127.0.0.1:{ports['sim']}/__stats  ({provider})")
            click.echo(f"  logs         {run_dir}/")
            click.echo("Ctrl-C stops everything.")
            ok = _keep_running(procs) and ok
    except KeyboardInterrupt:
        interrupted = not batch_done  # after the batch, Ctrl-C is the way out
    finally:
        _stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    left = [p.name for p in procs if p.alive()]
    click.echo(f"stopped {', '.join(p.name for p in reversed(procs)) or 'nothing'}: "
               + (f"STILL RUNNING: {', '.join(left)}" if left else "nothing left running"))
    leaked = [p.name for p in procs if api_key in p.log_text()]
    click.echo(f"provider key in any process log: {'YES ' + ','.join(leaked) if leaked else 'no'}")
    if interrupted:
        raise SystemExit(130)
    if not ok or leaked or left:
        raise SystemExit(1)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM: end as Ctrl-C does."""
    raise KeyboardInterrupt


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait (KeyboardInterrupt on leaving) while a child is started and
    recorded. Handlers, not a blocked signal mask: a child inherits the mask, not handlers."""
    caught: list[int] = []
    held = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


def _start(procs: list[Proc], name: str, argv: list[str], env: dict[str, str],
           run_dir: Path) -> Proc:
    with _signals_held():
        proc = Proc.start(name, argv, env, run_dir)
        procs.append(proc)
    return proc


def _stop_all(procs: list[Proc]) -> None:
    """Stop every child, newest first; Ctrl-C and SIGTERM are ignored meanwhile (a second
    Ctrl-C must not leave half of them running)."""
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for proc in reversed(procs):
            while True:
                try:
                    proc.stop()
                    break
                except KeyboardInterrupt:  # one raised just before the signals were ignored
                    continue
    finally:
        for sig, handler in ignored.items():
            signal.signal(sig, handler)


def _keep_running(procs: list[Proc]) -> bool:
    """The live view until Ctrl-C/SIGTERM (True) or until a child exits by itself (False)."""
    from ..api.client import Client
    from ..api.live import follow
    from ..workers.errors import Unavailable

    try:
        follow(Client().overview, until=lambda _: any(not p.alive() for p in procs))
    except KeyboardInterrupt:
        return True
    except Unavailable:  # the demo's Redis went away: say which child died, stop the rest
        time.sleep(1)
    dead = [p for p in procs if not p.alive()]
    click.echo("exited by itself: " + ", ".join(
        f"{p.name} (status {p.popen.returncode}, log {p.log_path})" for p in dead))
    return False


def _run_batch(count: int, api: str, token: str, timeout: float) -> bool:
    from ..api.client import Client
    from ..api.live import follow

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
    deadline = time.monotonic() + timeout
    follow(client.overview, interval=0.5, until=lambda _: time.monotonic() > deadline or all(
        client.get(i)["state"] in TERMINAL for i in ids))
    jobs = [client.get(i) for i in ids]
    for job in jobs:
        tracks = len(job["tracks"])
        click.echo(f"  {job['id'][:12]} {job['type']:<16} {job['state']:<10} "
                   f"task={job['upstream_task_id'] or '-':<32} tracks={tracks}")
    succeeded = sum(1 for j in jobs if j["state"] == "succeeded")
    click.echo(f"{succeeded}/{len(jobs)} jobs succeeded")
    return succeeded == len(jobs)
