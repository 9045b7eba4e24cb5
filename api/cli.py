"""The ``backbeat`` command line: enqueue, status, jobs, retry, watch, limiter, sim, demo.

Every command but ``sim`` and ``demo`` talks to Redis only (through the Python client), never to
the provider. Exit codes: 0 done; 1 refused (no such job, a conflict); 2 bad usage or invalid
request (field messages on stderr); 3 ``--wait`` ended before a terminal state; 69
(EX_UNAVAILABLE) Redis unreachable or stopped answering: one line on stderr naming the URL tried,
its password redacted.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import click

from ..provider.profiles import JOB_TYPES
from ..workers.errors import BackbeatError, Unavailable, ValidationError, WaitTimeout
from ..workers.states import JobState

#: exit status when Redis cannot be reached (sysexits.h EX_UNAVAILABLE)
EX_UNAVAILABLE = 69
#: subcommands imported only when run (or listed by --help): name -> (module, attribute)
LAZY_COMMANDS = {"sim": ("backbeat.simulator.cli", "sim"),
                 "demo": ("backbeat.devstack.demo", "demo")}


class _Main(click.Group):
    """The top command: ``sim`` and ``demo`` are loaded when asked for; a Redis that cannot be
    reached ends any command with one line and EX_UNAVAILABLE, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attr = LAZY_COMMANDS[cmd_name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return super().invoke(ctx)
        except ValidationError as err:
            click.echo("invalid request:", err=True)
            _print_errors(err.messages)
            ctx.exit(2)
        except WaitTimeout as err:
            click.echo(str(err), err=True)
            ctx.exit(3)
        except Unavailable as err:
            click.echo(f"backbeat: {err}", err=True)
            ctx.exit(EX_UNAVAILABLE)
        except BackbeatError as err:  # no such job, a conflict
            click.echo(str(err), err=True)
            ctx.exit(1)
        except (RedisConnectionError, RedisTimeoutError) as err:  # not through the client
            click.echo(f"backbeat: cannot reach Redis at {_redis_url()}: "
                       f"{' '.join(str(err).split())}", err=True)
            ctx.exit(EX_UNAVAILABLE)


def _redis_url() -> str:
    from ..config.redis_urls import redact
    from ..config.settings import get_settings

    try:
        return redact(get_settings().redis_url)
    except ValueError:
        return "BACKBEAT_REDIS_URL"


def _client():
    from .client import Client

    try:
        return Client()
    except ValueError as err:  # bad BACKBEAT_* value
        raise click.UsageError(str(err)) from None


def _print(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


@click.group(cls=_Main, epilog="Exit status: 0 done, 1 refused (no such job, conflict), 2 usage "
             "or invalid request, 3 --wait timed out, 69 Redis unreachable (one line naming "
             "the URL, password redacted).")
def main() -> None:
    """backbeat: exactly-once, rate-perfect generation jobs against a Suno-API provider."""


@main.command()
@click.argument("job_type", type=click.Choice(JOB_TYPES))
@click.option("--param", "-p", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A provider field; numbers are parsed as JSON (styleWeight=0.5).")
@click.option("--json", "json_params", help="All provider fields as one JSON object.")
@click.option("--idempotency-key", "-k", help="Same key, same job: safe to retry.")
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True,
              help="Order within the producer's lane: 9 first.")
@click.option("--producer", default="default", show_default=True,
              help="The producer recorded on the job (its lane and share, BACKBEAT_PRODUCERS).")
@click.option("--wait", "wait_s", type=float, default=None, metavar="SECONDS",
              help="Wait up to SECONDS for a terminal state and print it.")
def enqueue(job_type: str, pairs: tuple[str, ...], json_params: str | None,
            idempotency_key: str | None, priority: int, producer: str,
            wait_s: float | None) -> None:
    """Queue one job and print it."""
    params: dict[str, Any] = {}
    if json_params:
        try:
            params = json.loads(json_params)
        except ValueError as err:
            raise click.BadParameter(f"not JSON: {err}", param_hint="--json") from None
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        params[name] = _scalar(name, value)
    client = _client()
    job = client.enqueue(job_type, params, idempotency_key=idempotency_key, priority=priority,
                         producer=producer)
    if wait_s is not None:
        job = client.wait(job["id"], timeout=wait_s)
    _print(job)


@main.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Print every change until terminal.")
@click.option("--timeout", type=float, default=3600, show_default=True)
def status(job_id: str, follow: bool, timeout: float) -> None:
    """Print one job (or follow it through its transitions)."""
    client = _client()
    if not follow:
        _print(client.get(job_id))
        return
    for job in client.follow(job_id, timeout):
        err = job["error"]
        click.echo(f"{job['updated_at']}  {job['state']:<12} attempts={job['attempts']} "
                   f"task={job['upstream_task_id'] or '-'}"
                   + (f" error={err['code']}: {err['message']}" if err else ""))


@main.command("jobs")
@click.option("--state", type=click.Choice([s.value for s in JobState]),
              help="Only jobs in this state.")
@click.option("--type", "job_type", type=click.Choice(JOB_TYPES))
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--history", is_flag=True, help="Show each job's transitions.")
def list_jobs(state: str | None, job_type: str | None, limit: int, history: bool) -> None:
    """List jobs, newest first (``--state failed`` is the dead-letter view)."""
    client = _client()
    found, cursor = client.list(state, job_type, limit)
    for job in found:
        err = job["error"]
        click.echo(f"{job['id']}  {job['type']:<16} {job['state']:<11} "
                   f"attempts={job['attempts']} updated={job['updated_at']}"
                   + (f"  error={err['code']}: {err['message']}" if err else ""))
        if history:
            for h in client.history(job["id"]):
                click.echo(f"    {h['t']}  {h['from'] or '-'} -> {h['to']}  ({h['reason']})")
    if cursor:
        click.echo(f"(more: the API's cursor is {cursor})")


@main.command()
@click.argument("job_id")
def retry(job_id: str) -> None:
    """Requeue a failed or expired job (dead letter)."""
    _print(_client().retry(job_id))


@main.command()
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              metavar="SECONDS", help="Read the fleet again every SECONDS.")
@click.option("--once", is_flag=True, help="Print the view once and exit.")
@click.option("--events", is_flag=True,
              help="Instead of the view: one line per job transition, as they happen.")
@click.option("--count", type=click.IntRange(min=0), default=0,
              help="With --events: stop after this many events (0: never).")
@click.pass_context
def watch(ctx: click.Context, interval: float, once: bool, events: bool, count: int) -> None:
    """Watch the fleet live until Ctrl-C: jobs per state, submit calls in the window against
    the provider's rule, throttles, breaker, pause, backlog, the latest failures.

    On a terminal the view is redrawn in place; piped, one time-stamped line is printed each
    time something changes. It reads the Redis of BACKBEAT_REDIS_URL, so it watches any
    deployment this machine can reach.
    """
    from .live import follow, render

    if count and not events:
        raise click.UsageError("--count counts events: use it with --events")
    if events and (once or _given(ctx, "interval")):
        raise click.UsageError("--once and --interval are for the view, not --events")
    client = _client()
    try:
        if events:
            _watch_events(client, count)
        elif once:
            from rich.console import Console

            Console().print(render(client.overview()))
        else:
            follow(client.overview, interval=interval)
    except KeyboardInterrupt:  # Ctrl-C is how it ends: quietly, status 0
        return


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (not its default)."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _watch_events(client: Any, count: int) -> None:
    """Print every transition event from now on (``count`` of them; 0: until interrupted)."""
    seen, last = 0, "$"
    while count == 0 or seen < count:
        for stream_id, ev in client.events(last, block_ms=5000):
            last = stream_id
            seen += 1
            click.echo(f"{ev.get('t')}  {ev.get('job')}  {ev.get('from') or '-'} -> "
                       f"{ev.get('to')}  ({ev.get('reason')})")
            if seen == count:
                return


@main.group(invoke_without_command=True)
@click.pass_context
def limiter(ctx: click.Context) -> None:
    """Show the shared limiter: rates, tokens, cool-down, breaker, pause, backlog."""
    if ctx.invoked_subcommand is None:
        _print(_client().limiter())


@limiter.command("pause")
@click.option("--reason", default="manual", show_default=True)
@click.option("--account", default=None, help="only this account (its name); default: all")
def limiter_pause(reason: str, account: str | None) -> None:
    """Pause submissions fleet-wide; jobs stay queued (or go through the other accounts)."""
    _client().pause(reason, account=account)
    click.echo(f"submissions paused ({reason})" + (f" on account {account}" if account else ""))


@limiter.command("resume")
@click.option("--account", default=None, help="only this account (its name); default: all")
def limiter_resume(account: str | None) -> None:
    """Lift a pause (manual, credits or unauthorized) at once."""
    _client().resume(account=account)
    click.echo("submissions resumed" + (f" on account {account}" if account else ""))


def _scalar(name: str, value: str) -> Any:
    if name in ("styleWeight", "weirdnessConstraint", "audioWeight"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _print_errors(messages: Any, prefix: str = "") -> None:
    if isinstance(messages, dict):
        for key, sub in messages.items():
            _print_errors(sub, f"{prefix}{key}." if not isinstance(sub, list) else f"{prefix}{key}")
    elif isinstance(messages, list):
        for msg in messages:
            click.echo(f"  {prefix or '_'}: {msg}", err=True)
