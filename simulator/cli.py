"""Command line: ``backbeat sim`` runs the provider simulator until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import re
import signal
import threading

import click

from ..provider.profiles import PROFILES
from .config import SimConfig
from .server import SimServer

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> tuple[int, float]:
    """"20/10s" -> (20, 10.0); the window unit is ms, s (default), m or h."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"rate {text!r} is not N/WINDOW, e.g. 20/10s")
    count, window = int(match[1]), float(match[2] or 1) * _UNIT_S[match[3] or "s"]
    if count < 1 or window <= 0:
        raise ValueError(f"rate {text!r} needs N >= 1 and a window > 0")
    return count, window


def _rate_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, float]:
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_PROBABILITY = click.FloatRange(0.0, 1.0)


@click.command("sim")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=9000, envvar="BACKBEAT_SIM_PORT", show_default=True,
              help="Port to bind (env BACKBEAT_SIM_PORT); 0 picks a free one.")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="sunoapi",
              envvar="BACKBEAT_PROVIDER", show_default=True, help="Provider to imitate.")
@click.option("--api-key", "api_keys", multiple=True, envvar="BACKBEAT_API_KEY",
              show_default=False,
              help="Bearer key required from clients (env BACKBEAT_API_KEY); repeat the option "
                   "for several accounts (in the env: separated by spaces), each with its own "
                   "create window and balance; none = no auth.")
@click.option("--rate", default="20/10s", show_default=True, callback=_rate_option,
              help="Create limit of each API key, N/WINDOW.")
@click.option("--stage-seconds", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Timeline unit: text at 1x, first at 2x, complete at 3x.")
@click.option("--fail-rate", type=_PROBABILITY, default=0.0, help="Tasks ending in failure.")
@click.option("--callback-loss-rate", type=_PROBABILITY, default=0.0, help="Callbacks never sent.")
@click.option("--server-error-rate", type=_PROBABILITY, default=0.0, help="Calls answered 500.")
@click.option("--accept-timeout-rate", type=_PROBABILITY, default=0.0,
              help="Accepted calls answered only after 35 s (the client times out).")
@click.option("--drop-rate", type=_PROBABILITY, default=0.0,
              help="Create calls whose connection is closed with no answer.")
@click.option("--latency-ms", type=click.FloatRange(min=0.0), default=0.0,
              help="Added to every provider answer.")
@click.option("--tracks", type=click.IntRange(min=1), default=2, show_default=True,
              help="Tracks per task.")
@click.option("--credits", "credits_balance", type=click.FloatRange(min=0.0),
              default=SimConfig.credits_balance, show_default=True,
              help="Starting credit balance of every API key (the credit endpoint).")
@click.option("--credit-cost", type=click.FloatRange(min=0.0), default=SimConfig.credit_cost,
              show_default=True, help="Credits one accepted create call costs (0: free).")
@click.option("--webhook-hmac-key", default="", envvar="BACKBEAT_SIM_WEBHOOK_HMAC_KEY",
              show_default=False, help="Sign callbacks kie-style with this key.")
@click.option("--http-status-errors", is_flag=True,
              help="Send error codes as HTTP status too (default: HTTP 200, code in body).")
@click.option("--seed", type=int, default=None, help="Random seed, for reproducible runs.")
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
def sim(
    host: str, port: int, profile: str, api_keys: tuple[str, ...], rate: tuple[int, float],
    stage_seconds: float, fail_rate: float, callback_loss_rate: float,
    server_error_rate: float, accept_timeout_rate: float, drop_rate: float, latency_ms: float,
    tracks: int, credits_balance: float, credit_cost: float, webhook_hmac_key: str,
    http_status_errors: bool, seed: int | None, verbose: bool,
) -> None:
    """Run the provider simulator (kie.ai or sunoapi.org) until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    keys = [key for key in api_keys if key]
    try:
        config = SimConfig(
            profile=profile, host=host, port=port, api_key=keys[0] if keys else "",
            api_keys=tuple(keys[1:]), verbose=verbose,
            rate_limit=rate[0], rate_window_s=rate[1],
            text_after_s=stage_seconds, first_after_s=2 * stage_seconds,
            complete_after_s=3 * stage_seconds, fail_rate=fail_rate,
            callback_loss_rate=callback_loss_rate, server_error_rate=server_error_rate,
            accept_timeout_rate=accept_timeout_rate, drop_rate=drop_rate,
            latency_ms=latency_ms, tracks=tracks, credits_balance=credits_balance,
            credit_cost=credit_cost, webhook_hmac_key=webhook_hmac_key,
            http_status_errors=http_status_errors, seed=seed,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = SimServer(config)
    try:
        server.start()
    except OSError as exc:
        reason = exc.strerror or exc
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None
    click.echo(f"simulator ({profile}) listening on {server.url}")
    server.serve_forever(stop)
