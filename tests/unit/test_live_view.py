"""The live view (api/live.py) and ``backbeat watch``, on a real overview read from the test
Redis: jobs queued behind a pause, one call in the window, an open breaker, a failed job."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from redis import Redis
from rich.console import Console

from backbeat.api import live
from backbeat.api.cli import main
from backbeat.config.settings import Settings
from backbeat.devstack.processes import venv_bin
from backbeat.provider.profiles import Outcome
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import JobState

REASON = "live-view test"
#: a key prefix of this file's own: a worker left running by an integration test serves the
#: suite's default prefix (and would park the jobs queued here), never this one
PREFIX = "lv"
ENV = {"BACKBEAT_KEY_PREFIX": PREFIX}
ERROR = ("501", "the model refused the stems")
VOCALS = {"uploadUrl": "https://example.com/backing.mp3", "title": "City lights",
          "prompt": "[Verse] neon hum", "style": "Jazz", "negativeTags": "screaming"}


def text_of(renderable: Any, width: int = 100) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@pytest.fixture
def client(redis) -> Any:
    """The Python client on this file's own key prefix (every key of it removed first)."""
    from backbeat.api.client import Client

    for key in redis.scan_iter(f"{PREFIX}:*", count=1000):
        redis.delete(key)
    return Client(Settings.from_env({**os.environ, **ENV}))


def cli(args: list[str]) -> Any:
    """``backbeat <args>`` in a CliRunner with ENV. The CLI reads the process-wide settings
    (read once, cached): read afresh inside ENV, and forgotten again afterwards."""
    from backbeat.config.settings import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner(env=ENV).invoke(main, args)
    finally:
        get_settings.cache_clear()


@pytest.fixture
def troubled(client) -> dict[str, Any]:
    """A fleet with something to show: one accepted call in the submit window, then a manual
    pause (no stray worker takes the jobs), two jobs queued, one failed, the breaker opened by
    a maintenance answer. Returns the job ids."""
    rt = Runtime(Settings.from_env({**os.environ, **ENV}))
    grant = rt.submit_limiter.try_acquire()
    assert grant.granted, grant
    rt.submit_limiter.report(Outcome.ACCEPTED, grant)
    rt.submit_limiter.flush()  # a normal answer is held up to FLUSH_S (answers.py)
    client.pause(REASON)
    queued = [client.enqueue("add-vocals", {**VOCALS, "title": f"Queued {n}"})["id"]
              for n in range(2)]
    failed = client.enqueue("add-vocals", {**VOCALS, "title": "Doomed"})["id"]
    assert rt.store.transition(failed, JobState.FAILED, "test", fields={
        "error_code": ERROR[0], "error_message": ERROR[1]}).applied
    assert rt.submit_limiter.report(Outcome.MAINTENANCE) == "opened"
    return {"queued": queued, "failed": failed}


def test_render_shows_jobs_window_breaker_pause_and_failures(client, troubled):
    text = text_of(live.render(client.overview()))
    assert re.search(r"queued\s+2 █+░*", text), text
    assert re.search(r"failed\s+1 █+░*", text), text
    assert re.search(r"submitting\s+0\s", text), text
    assert "calls in the last 10 s: 1 / 20" in text and "rule 20/10s" in text, text
    assert "calls: accepted 1, maintenance 1" in text, text
    assert re.search(r"breaker\s+open, \d+(\.\d)? s left \(trips 1\)", text), text
    assert f"pause    paused: {REASON}, until resumed" in text, text
    assert "backlog  queued 2 · parked" in text, text
    assert "1 failed" in text, text
    assert re.search(rf"{troubled['failed']} add-vocals\s+{ERROR[0]}: {ERROR[1]}", text), text
    assert all(job_id not in text for job_id in troubled["queued"])  # failures only


def test_a_quiet_fleet_renders_breaker_closed_and_not_paused(client):
    text = text_of(live.render(client.overview()))
    assert re.search(r"breaker\s+closed\s", text) and "trips" not in text, text
    assert re.search(r"pause\s+not paused", text), text
    assert "calls in the last 10 s: 0 / 20" in text and "0 failed" in text, text


def test_render_fits_80_columns(client, troubled):
    text = text_of(live.render(client.overview()), width=80)
    assert max(map(len, text.splitlines())) <= 80
    assert troubled["failed"] in text  # the whole id (to paste into `backbeat status`)


def test_line_has_the_essentials_on_one_line(client, troubled):
    ov = client.overview()
    text = live.line(ov)
    assert "\n" not in text
    assert text.startswith("queued=2 failed=1 | window 1/20 per 10s | throttles 0 | "), text
    assert re.search(r"\| breaker open, \d+(\.\d)? s left \(trips 1\) \|", text), text
    assert text.endswith(f"| paused: {REASON}, until resumed"), text
    assert "s left" not in live.line(ov, timers=False)  # countdowns left out of the comparison


def test_render_and_line_tolerate_missing_and_extra_keys(client):
    ov = {**client.overview(), "credits": {"remaining": 42}, "from_the_future": [1, 2]}
    assert "credits  remaining 42" in text_of(live.render(ov))
    read = {**ov, "credits": {"balance": 118.5, "read_s_ago": 12.0}}
    assert "credits  118.5 (read 12 s ago)" in text_of(live.render(read))
    unread = {**ov, "credits": {"balance": None, "read_s_ago": None}}
    assert "credits  not read yet" in text_of(live.render(unread))
    assert "credits" not in text_of(live.render({**ov, "credits": None}))
    for partial in ({}, {"jobs": {"queued": 1}}, {k: v for k, v in ov.items() if k != "rule"}):
        assert "breaker" in text_of(live.render(partial))
        assert "breaker" in live.line(partial)


def test_follow_without_a_terminal_prints_a_line_only_when_it_changes(client):
    client.pause(REASON)
    out = io.StringIO()
    console = Console(file=out, width=300)
    assert not console.is_terminal
    fetched: list[dict[str, Any]] = []

    def fetch() -> dict[str, Any]:
        if len(fetched) == 3:  # something happens between the 3rd and the 4th look
            client.enqueue("add-vocals", VOCALS)
        fetched.append(client.overview())
        return fetched[-1]

    last = live.follow(fetch, until=lambda ov: len(fetched) == 6, interval=0.01,
                       console=console)
    assert last is fetched[-1] and last["jobs"]["queued"] == 1
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert re.match(r"\[\d\d:\d\d:\d\d\] no jobs \| window 0/20 per 10s", lines[0]), lines
    assert re.match(r"\[\d\d:\d\d:\d\d\] queued=1 \| ", lines[1]), lines


def test_follow_on_a_terminal_draws_the_panel_until_told(client, troubled):
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True)
    looks: list[int] = []
    live.follow(client.overview, until=lambda ov: looks.append(1) or len(looks) == 3,
                interval=0.01, console=console)
    drawn = out.getvalue()
    assert "calls in the last 10 s" in drawn and "open" in drawn and REASON in drawn
    assert len(looks) == 3


def test_follow_lets_ctrl_c_reach_its_caller(client):
    calls: list[int] = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return client.overview()

    for terminal in (False, True):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            live.follow(fetch, interval=0.01,
                        console=Console(file=io.StringIO(), force_terminal=terminal))


def test_the_live_module_does_not_need_the_devstack():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(live.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "devstack" in m or "simulator" in m], imported


# -- several provider accounts --------------------------------------------------------------

#: three accounts: "main" takes submissions, "spare" (another rate) has its breaker opened,
#: "old" (weight 0, another provider) drains and is paused for credits
ACCOUNTS = ('[{"name": "main", "api_key": "sk-lv-main"},'
            ' {"name": "spare", "api_key": "sk-lv-spare", "submit_rate": "10/10s"},'
            ' {"name": "old", "api_key": "sk-lv-old", "provider": "kie", "weight": 0}]')


@pytest.fixture
def accounts(client) -> dict[str, Any]:
    """The overview of a three-account fleet (ACCOUNTS) on this file's key prefix: one call
    accepted through "main", a maintenance answer through "spare", a credits answer through
    "old"."""
    from backbeat.api.client import Client

    settings = Settings.from_env({**os.environ, **ENV, "BACKBEAT_ACCOUNTS": ACCOUNTS})
    rt = Runtime(settings)
    main_, spare, old = rt.accounts
    grant = main_.submit.try_acquire()
    assert grant.granted, grant
    main_.submit.report(Outcome.ACCEPTED, grant)
    main_.submit.flush()  # a normal answer is held up to FLUSH_S (answers.py)
    assert spare.submit.report(Outcome.MAINTENANCE) == "opened"
    old.submit.report(Outcome.CREDITS)
    ov = Client(settings).overview()
    assert [a["name"] for a in ov["accounts"]] == ["main", "spare", "old"], ov["accounts"]
    return ov


def _account_rows(text: str) -> dict[str, str]:
    """The accounts section's rows of a rendered panel, by account name."""
    rows = {}
    for ln in text.splitlines():
        m = re.match(r"│ (?:accounts|        ) (main|spare|old) +(.*?) *│$", ln)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_render_has_a_row_per_account_with_its_own_state(accounts):
    text = text_of(live.render(accounts))
    rows = _account_rows(text)
    assert list(rows) == ["main", "spare", "old"], text
    assert re.fullmatch(r"sunoapi +1/20 of 20/10s +breaker closed", rows["main"]), text
    assert re.fullmatch(r"sunoapi +0/10 of 10/10s +breaker open, \d+(\.\d+)? s left",
                        rows["spare"]), text
    assert re.fullmatch(r"kie +0/\d+ of \S+ +draining · breaker closed · paused \(credits\)",
                        rows["old"]), text
    assert re.search(r"^│ accounts main ", text, re.M), text
    assert "draining" not in rows["main"] + rows["spare"]
    # the failures heading still comes right above the failures, below the accounts
    lines = text.splitlines()
    at = [i for i, ln in enumerate(lines) if re.match(r"│ failures +0 failed", ln)]
    assert at and at[0] > max(i for i, ln in enumerate(lines) if " old " in ln), text
    assert max(map(len, text_of(live.render(accounts), width=80).splitlines())) <= 80


def test_one_account_renders_as_before(client, troubled):
    ov = client.overview()
    assert len(ov["accounts"]) == 1, ov["accounts"]
    old = {k: v for k, v in ov.items() if k != "accounts"}  # a picture of an older server
    text = text_of(live.render(ov))
    assert text == text_of(live.render(old))
    assert live.line(ov) == live.line(old)
    assert "accounts" not in text and "acct" not in live.line(ov)
    assert re.search(r"^│ failures +1 failed", text, re.M), text  # in the facts, as before


def test_line_names_each_account_in_trouble(accounts):
    trouble = " | acct spare: breaker open | acct old: paused (credits)"
    fleet = {k: v for k, v in accounts.items() if k != "accounts"}
    text = live.line(accounts)
    assert text == live.line(fleet) + trouble, text  # main: nothing wrong, nothing said
    assert text.startswith("no jobs | window 1/30 per 10s | "), text  # main's and spare's
    assert live.line(accounts, timers=False) == live.line(fleet, timers=False) + trouble


# -- producers' lanes ------------------------------------------------------------------------

#: two producers with jobs in their lanes: "web" (weight 3) and "batch" (weight 1)
LANES = [{"name": "web", "waiting": 120, "weight": 3.0},
         {"name": "batch", "waiting": 3, "weight": 1.0}]


def _lane_rows(text: str) -> dict[str, str]:
    """The lanes section's rows of a rendered panel, by producer name."""
    rows = {}
    for ln in text.splitlines():
        m = re.match(r"│ (?:lanes   |        ) (web|batch) +(.*?) *│$", ln)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_render_has_a_row_per_lane_with_its_waiting_jobs_and_share(client, troubled):
    ov = {**client.overview(), "producers": LANES}
    text = text_of(live.render(ov))
    rows = _lane_rows(text)
    assert list(rows) == ["web", "batch"], text
    assert re.fullmatch(r"120 waiting +weight 3 +share 75%", rows["web"]), text
    assert re.fullmatch(r"3 waiting +weight 1 +share 25%", rows["batch"]), text
    assert re.search(r"^│ lanes +web ", text, re.M), text
    # the failures heading still comes right above the failures, below the lanes
    lines = text.splitlines()
    at = [i for i, ln in enumerate(lines) if re.match(r"│ failures +1 failed", ln)]
    assert at and at[0] > max(i for i, ln in enumerate(lines) if " batch " in ln), text
    assert troubled["failed"] in lines[at[0] + 1], text
    narrow = text_of(live.render({**ov, "producers": [{**LANES[0], "name": "w" * 63},
                                                      LANES[1]]}), width=80)
    assert max(map(len, narrow.splitlines())) <= 80, narrow
    assert "share 75%" in narrow and "share 25%" in narrow, narrow


def test_no_lane_waiting_renders_as_before(client, troubled):
    ov = client.overview()
    assert ov["producers"] == [], ov["producers"]  # the jobs went to the broker at once
    old = {k: v for k, v in ov.items() if k != "producers"}  # a picture of an older server
    text = text_of(live.render(ov))
    assert text == text_of(live.render(old))
    assert live.line(ov) == live.line(old)
    assert not re.search(r"^│ lanes ", text, re.M) and "lanes:" not in live.line(ov), text
    assert re.search(r"^│ failures +1 failed", text, re.M), text  # in the facts, as before


def test_line_names_each_lane_and_its_length(client, troubled):
    ov = client.overview()
    text = live.line({**ov, "producers": LANES})
    assert text == live.line(ov) + " | lanes: web 120, batch 3", text
    assert "\n" not in text


# -- backbeat watch -------------------------------------------------------------------------


def test_watch_once_shows_the_same_facts(client, troubled):
    result = cli(["watch", "--once"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert re.search(r"queued\s+2 █", text) and re.search(r"failed\s+1 █", text), text
    assert "calls in the last 10 s: 1 / 20" in text, text
    assert re.search(r"breaker\s+open, .* \(trips 1\)", text), text
    assert f"paused: {REASON}" in text and troubled["failed"] in text, text


def test_watch_events_count_1_prints_the_next_event(client, redis):
    client.pause(REASON)
    job: dict[str, Any] = {}

    def enqueue_once_watch_blocks() -> None:
        probe = Redis(port=redis.connection_pool.connection_kwargs["port"],
                      decode_responses=True)
        end = time.monotonic() + 30
        try:  # enqueue in any case, so watch always ends; the assertion below tells
            while not any(c.get("cmd") == "xread" for c in probe.client_list()):
                if time.monotonic() > end:
                    job["never_blocked"] = True
                    break
                time.sleep(0.02)
        finally:
            probe.close()
            job.update(client.enqueue("add-vocals", VOCALS))

    thread = threading.Thread(target=enqueue_once_watch_blocks)
    thread.start()
    result = cli(["watch", "--events", "--count", "1"])
    thread.join()
    assert result.exit_code == 0, result.output
    assert "never_blocked" not in job, "watch --events never blocked on the stream"
    assert result.output.splitlines() == [
        line for line in result.output.splitlines() if f"  {job['id']}  - -> queued  (" in line]
    assert len(result.output.splitlines()) == 1, result.output


@pytest.mark.parametrize("args", [["--count", "3"], ["--events", "--once"],
                                  ["--events", "--interval", "2"], ["--interval", "0"]])
def test_watch_refuses_options_that_do_not_go_together(redis, args):
    result = CliRunner().invoke(main, ["watch", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_watch_runs_until_ctrl_c_and_exits_0_quietly(client, troubled):
    watch = subprocess.Popen([venv_bin("backbeat"), "watch", "--interval", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **ENV})
    try:
        ready, _, _ = select.select([watch.stdout], [], [], 60)
        assert ready, "watch printed nothing in 60 s"
        first = watch.stdout.readline()
        time.sleep(0.5)  # a few more looks: nothing changed, so nothing more is printed
        watch.send_signal(signal.SIGINT)
        stdout, stderr = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert watch.returncode == 0, (first, stdout, stderr)
    assert stderr == "", stderr
    # (the window and the breaker's open time run on: on a slow machine they may have moved
    # on by the first look; a line per change is test_follow_without_a_terminal_...)
    assert re.match(r"\[\d\d:\d\d:\d\d\] queued=2 failed=1 \| window [01]/20 per 10s", first), first
    assert f"paused: {REASON}" in first and "breaker " in first, first
