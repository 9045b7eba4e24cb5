"""The live terminal view of the fleet (``backbeat watch``, ``backbeat demo``): one picture drawn
from :meth:`backbeat.api.client.Client.overview` (``workers/overview.py``).

- :func:`render`: a rich renderable, readable in 80 columns: jobs per state with proportional
  bars, the submit calls in the window against the provider's rule, throttles and cool-down,
  breaker, pause, backlog, the latest failures; with more than one provider account, a row
  per account (its window, breaker, pause, credits; "draining" at weight 0); while
  producers' lanes hold jobs, a row per lane (jobs waiting, weight, share of the rate);
- :func:`line`: the essentials as one plain line, for logs and pipes (with more than one
  account, each account in trouble named: ``acct b: breaker open``; with jobs waiting in
  producers' lanes, each lane and its length: ``lanes: web 120, batch 3``);
- :func:`follow`: fetch and show until told to stop: redrawn in place on a terminal, else one
  time-stamped :func:`line` each time it changes (a quiet fleet writes nothing).

Every figure is read with a default: an overview with keys missing or added (a newer or older
server) still draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

#: how many of the latest failures the view lists
FAILURES_SHOWN = 3
#: width of the job-state bars and of the window bar (characters)
JOB_BAR, WINDOW_BAR = 30, 20
_BREAKER_STYLE = {"closed": "green", "half-open": "yellow", "open": "bold red"}


def render(ov: dict[str, Any]) -> RenderableType:
    """The overview ``ov`` as one panel (see the module docstring)."""
    jobs = _jobs(ov)
    total = sum(jobs.values())
    counts = Table.grid(padding=(0, 1))
    counts.add_column(min_width=11)
    counts.add_column(justify="right", min_width=5)
    counts.add_column()
    for state, n in jobs.items():
        style = "" if n else "dim"
        bar = _bar(n, total, JOB_BAR, _state_style(state)) if n else Text("")
        counts.add_row(Text(state, style=style), Text(str(n), style=style), bar)
    if not jobs:
        counts.add_row(Text("jobs", style="dim"), Text("-", style="dim"), Text(""))

    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", min_width=8)
    facts.add_column()
    facts.add_row("window", _window_text(ov))
    facts.add_row("", _calls_text(ov))
    breaker = _breaker(ov)
    facts.add_row("breaker", Text(_breaker_words(breaker),
                                  style=_BREAKER_STYLE.get(breaker.get("state"), "")))
    pause = _pause(ov)
    facts.add_row("pause", Text(_pause_words(pause), style="bold yellow" if pause.get("paused")
                                else "green"))
    facts.add_row("backlog", _backlog_words(ov))
    if ov.get("credits") is not None:
        facts.add_row("credits", _credits_words(ov["credits"]))
    accounts = _accounts(ov)
    producers = _producers(ov)
    parts: list[RenderableType] = [counts, Text(""), facts]
    sections: list[RenderableType] = []
    if len(accounts) > 1:  # one account: the rows above are its own, nothing to add
        sections.append(_accounts_table(accounts))
    if producers:  # no lane holds a job: nothing to add
        sections.append(_lanes_table(producers))
    if sections:
        heading = Table.grid(padding=(0, 1))  # below the sections, above the failures
        heading.add_column(style="bold", min_width=8)
        heading.add_column()
        heading.add_row("failures", _failures_heading(ov))
        parts += [*sections, heading]
    else:
        facts.add_row("failures", _failures_heading(ov))
    failures = [f for f in ov.get("failures") or [] if isinstance(f, dict)][:FAILURES_SHOWN]
    if failures:
        ids = [str(f.get("id", "?")) for f in failures]
        types = [str(f.get("type", "")) for f in failures]
        listed = Table.grid(padding=(0, 1), expand=True)  # the message, cut to fit
        listed.add_column(no_wrap=True, min_width=max(map(len, ids)))  # whole: copy, paste
        listed.add_column(no_wrap=True, style="cyan", min_width=max(map(len, types)))
        listed.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        for job_id, kind, f in zip(ids, types, failures, strict=True):
            listed.add_row(job_id, kind, Text(_error_words(f.get("error")), style="red"))
        parts.append(listed)
    title = " · ".join(str(x) for x in ("backbeat", ov.get("provider"), ov.get("account")) if x)
    return Panel(Group(*parts), title=title, title_align="left", subtitle=_clock(ov),
                 subtitle_align="right", box=box.ROUNDED, expand=False)


def line(ov: dict[str, Any], *, timers: bool = True) -> str:
    """The essentials of ``ov`` on one plain line, e.g. ``queued=3 submitting=1 | window 12/20
    per 10s | throttles 0 | breaker closed | not paused``; ``timers=False`` leaves out the
    countdowns (cool-down, breaker, next probe), which change every second by themselves."""
    jobs = _jobs(ov)
    states = " ".join(f"{k}={v}" for k, v in jobs.items() if v) or "no jobs"
    rule = _rule(ov)
    used, limit = _int(ov.get("window_calls")), rule["effective_limit"]
    window = f"window {used}/{limit} per {_secs(rule['window_s'])}s" if rule["limit"] else \
        f"window {used} (no rule reported)"
    parts = [states, window + ("" if limit == rule["limit"] else f" (rule {rule['rate']})")]
    throttles = f"throttles {_int(ov.get('throttles'))}"
    cool = _float(ov.get("cooldown_s"))
    if cool > 0:
        throttles += f" (cool-down {_secs(cool)}s)" if timers else " (cool-down)"
    parts.append(throttles)
    parts.append("breaker " + _breaker_words(_breaker(ov), timers))
    parts.append(_pause_words(_pause(ov), timers))
    backlog = ov.get("backlog") if isinstance(ov.get("backlog"), dict) else {}
    stuck = {k: _int(backlog.get(k)) for k in ("parked", "uncertain") if _int(backlog.get(k))}
    if stuck:
        parts.append(" ".join(f"{k} {v}" for k, v in stuck.items()))
    accounts = _accounts(ov)
    if len(accounts) > 1:
        for a in accounts:
            trouble = _account_trouble(a)
            if trouble:
                parts.append(f"acct {a.get('name') or '?'}: {', '.join(trouble)}")
    producers = _producers(ov)
    if producers:
        parts.append("lanes: " + ", ".join(f"{p['name']} {p['waiting']}" for p in producers))
    return " | ".join(parts)


def follow(fetch: Callable[[], dict[str, Any]], *,
           until: Callable[[dict[str, Any]], bool] | None = None, interval: float = 1.0,
           console: Console | None = None) -> dict[str, Any]:
    """Show ``fetch()`` every ``interval`` seconds until ``until(overview)`` is true, and return
    that overview (``until`` None: until interrupted). On a terminal the panel of
    :func:`render` is redrawn in place; elsewhere (a pipe, a CI log) a time-stamped
    :func:`line` is printed each time it changes. What ``fetch`` raises and KeyboardInterrupt
    reach the caller; the first fetch happens before anything is drawn."""
    console = console or Console()
    ov = fetch()
    if console.is_terminal:
        with Live(render(ov), console=console, auto_refresh=False,
                  vertical_overflow="visible") as live:
            while not (until and until(ov)):
                time.sleep(interval)
                ov = fetch()
                live.update(render(ov), refresh=True)
        return ov
    shown = None
    while True:
        key = line(ov, timers=False)
        if key != shown:
            console.print(f"[{_clock(ov)}] {line(ov)}", markup=False, highlight=False,
                          soft_wrap=True)
            shown = key
        if until and until(ov):
            return ov
        time.sleep(interval)
        ov = fetch()


# -- the pieces -----------------------------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _secs(value: float) -> str:
    """Seconds for people: 10.0 -> "10", 1.25 -> "1.2", 0.04 -> "0.04"."""
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}".removesuffix(".0") if value >= 1 else f"{value:.2g}"


def _jobs(ov: dict[str, Any]) -> dict[str, int]:
    jobs = ov.get("jobs")
    return {str(k): _int(v) for k, v in jobs.items()} if isinstance(jobs, dict) else {}


def _rule(ov: dict[str, Any]) -> dict[str, Any]:
    rule = ov.get("rule") if isinstance(ov.get("rule"), dict) else {}
    limit = _int(rule.get("limit"))
    window_s = _float(rule.get("window_s"))
    return {"limit": limit, "window_s": window_s,
            "rate": rule.get("rate") or f"{limit}/{_secs(window_s)}s",
            "effective_limit": _int(rule.get("effective_limit", limit))}


def _breaker(ov: dict[str, Any]) -> dict[str, Any]:
    breaker = ov.get("breaker")
    return breaker if isinstance(breaker, dict) else {}


def _pause(ov: dict[str, Any]) -> dict[str, Any]:
    pause = ov.get("pause")
    return pause if isinstance(pause, dict) else {}


def _accounts(ov: dict[str, Any]) -> list[dict[str, Any]]:
    """The picture's accounts (workers/overview.py ``_account``); [] for an older server."""
    accounts = ov.get("accounts")
    return [a for a in accounts if isinstance(a, dict)] if isinstance(accounts, list) else []


def _producers(ov: dict[str, Any]) -> list[dict[str, Any]]:
    """The producers whose lane holds jobs (workers/overview.py ``producers``), each as
    ``{"name", "waiting", "weight", "share"}`` (share: its weight over the listed producers'
    weights, 0..1); [] when no lane holds a job, or for an older server."""
    producers = ov.get("producers")
    if not isinstance(producers, list):
        return []
    listed = [{"name": str(p.get("name") or "?"), "waiting": _int(p.get("waiting")),
               "weight": _float(p.get("weight"))} for p in producers if isinstance(p, dict)]
    total = sum(max(p["weight"], 0.0) for p in listed)
    for p in listed:
        p["share"] = max(p["weight"], 0.0) / total if total > 0 else 0.0
    return listed


def _clock(ov: dict[str, Any]) -> str:
    t = ov.get("t")
    return time.strftime("%H:%M:%S", time.localtime(_int(t) / 1000 if t else time.time()))


def _bar(n: int, total: int, width: int, style: str) -> Text:
    filled = 0 if total <= 0 else max(1 if n else 0, round(width * min(n, total) / total))
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"))


def _state_style(state: str) -> str:
    return {"succeeded": "green", "failed": "red", "expired": "red", "cancelled": "magenta",
            "queued": "blue"}.get(state, "yellow")


def _window_text(ov: dict[str, Any]) -> Text:
    rule = _rule(ov)
    used, limit = _int(ov.get("window_calls")), rule["effective_limit"]
    if not rule["limit"]:
        return Text(f"calls in the window: {used} (no rule reported)")
    style = "green" if used < 0.8 * limit else "yellow" if used < limit else "red"
    text = Text(f"calls in the last {_secs(rule['window_s'])} s: ")
    text.append(f"{used} / {limit}", style="bold")
    text.append(" ")
    text.append_text(_bar(used, max(limit, used, 1), WINDOW_BAR, style))
    text.append(f" rule {rule['rate']}")
    if limit != rule["limit"]:
        text.append(" (cut by throttles)", style="yellow")
    return text


def _calls_text(ov: dict[str, Any]) -> Text:
    cool = _float(ov.get("cooldown_s"))
    words = [f"in flight {_int(ov.get('in_flight'))}",
             f"throttles {_int(ov.get('throttles'))}",
             f"cool-down {_secs(cool)} s" if cool > 0 else "no cool-down"]
    calls = ov.get("calls") if isinstance(ov.get("calls"), dict) else {}
    made = ", ".join(f"{k} {_int(v)}" for k, v in calls.items() if _int(v))
    if made:
        words.append(f"calls: {made}")
    return Text(" · ".join(words), style="yellow" if cool > 0 else "")


def _breaker_words(breaker: dict[str, Any], timers: bool = True) -> str:
    state = str(breaker.get("state") or "unknown")
    trips = _int(breaker.get("trips"))
    left = _float(breaker.get("open_for_s"))
    words = state
    if state == "open" and timers:
        words += f", {_secs(left)} s left"
    elif state == "half-open":
        words += ", one probe call out"
    return f"{words} (trips {trips})" if trips or state not in ("closed", "unknown") else words


def _pause_words(pause: dict[str, Any], timers: bool = True) -> str:
    if not pause.get("paused"):
        return "not paused"
    words = f"paused: {pause.get('reason') or 'no reason given'}"
    if pause.get("automatic_probe"):
        nxt = pause.get("next_probe_in_s")
        words += (f", next automatic probe in {_secs(_float(nxt))} s"
                  if timers and nxt is not None else ", automatic probe")
    else:
        words += ", until resumed"
    return words


def _accounts_table(accounts: list[dict[str, Any]]) -> Table:
    """A row per account: name, provider, its window against its rate, then its state:
    draining (weight 0), breaker (seconds left when open), pause reason, credit balance."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", min_width=8)  # the facts' first column: "accounts"
    table.add_column(style="bold", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column(style="dim", no_wrap=True, overflow="ellipsis", max_width=10)
    table.add_column(no_wrap=True)
    table.add_column()  # the state words: wrapped when the names are long
    for i, a in enumerate(accounts):
        used, limit = _int(a.get("window_calls")), _int(a.get("effective_limit"))
        window = Text(f"{used}/{limit}", style="red" if limit and used >= limit else "")
        rate = a.get("rate")
        if rate:
            window.append(f" of {rate}", style="dim")
        table.add_row("accounts" if i == 0 else "", str(a.get("name") or "?"),
                      str(a.get("provider") or ""), window, _account_state(a))
    return table


def _lanes_table(producers: list[dict[str, Any]]) -> Table:
    """A row per producer whose lane holds jobs: name, jobs waiting, weight, and its share
    of the fleet's rate while these lanes wait (deficit round robin over the weights)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", min_width=8)  # the facts' first column: "lanes"
    table.add_column(style="bold", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for i, p in enumerate(producers):
        share = p["share"] * 100
        table.add_row("lanes" if i == 0 else "", Text(p["name"]), f"{p['waiting']} waiting",
                      Text(f"weight {p['weight']:g}", style="dim"),
                      "share " + ("<1%" if 0 < share < 1 else f"{share:.0f}%"))
    return table


def _account_state(a: dict[str, Any]) -> Text:
    words: list[tuple[str, str]] = []
    if "weight" in a and _float(a.get("weight")) <= 0:
        words.append(("draining", "magenta"))
    breaker = a.get("breaker") if isinstance(a.get("breaker"), dict) else {}
    state = str(breaker.get("state") or "unknown")
    if state == "open":
        state += f", {_secs(_float(breaker.get('open_for_s')))} s left"
    words.append((f"breaker {state}", _BREAKER_STYLE.get(str(breaker.get("state")), "")))
    pause = a.get("pause") if isinstance(a.get("pause"), dict) else {}
    if pause.get("paused"):
        words.append((f"paused ({pause.get('reason') or 'no reason given'})", "bold yellow"))
    credits = a.get("credits") if isinstance(a.get("credits"), dict) else {}
    if credits.get("balance") is not None:
        words.append((f"credits {_credits_words({'balance': credits['balance']})}", ""))
    text = Text()
    for n, (word, style) in enumerate(words):
        if n:
            text.append(" · ", style="dim")
        text.append(word, style=style)
    return text


def _account_trouble(a: dict[str, Any]) -> list[str]:
    """What :func:`line` says of an account: a breaker not closed, a pause (no countdowns:
    the line only changes when the state does)."""
    trouble = []
    breaker = a.get("breaker") if isinstance(a.get("breaker"), dict) else {}
    if breaker.get("state") and breaker.get("state") != "closed":
        trouble.append(f"breaker {breaker['state']}")
    pause = a.get("pause") if isinstance(a.get("pause"), dict) else {}
    if pause.get("paused"):
        trouble.append(f"paused ({pause.get('reason') or 'no reason given'})")
    return trouble


def _backlog_words(ov: dict[str, Any]) -> str:
    backlog = ov.get("backlog") if isinstance(ov.get("backlog"), dict) else {}
    return " · ".join(f"{k.replace('_', ' ')} {_int(v)}" for k, v in backlog.items()) or "-"


def _credits_words(credits: Any) -> str:
    """``{"balance", "read_s_ago"}`` (workers/status.py), or any dict of figures."""
    if isinstance(credits, dict) and "balance" in credits:
        balance, ago = credits.get("balance"), credits.get("read_s_ago")
        if balance is None:
            return "not read yet"
        shown = (f"{balance:,.2f}".rstrip("0").rstrip(".") if isinstance(balance, float)
                 else str(balance))
        return shown + (f" (read {_secs(_float(ago))} s ago)" if ago is not None else "")
    if isinstance(credits, dict):
        return " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in credits.items()
                          if not isinstance(v, (dict, list))) or "-"
    return "-" if credits is None else str(credits)


def _failures_heading(ov: dict[str, Any]) -> Text:
    failed = _jobs(ov).get("failed", len(ov.get("failures") or []))
    dup = ov.get("duplicates") if isinstance(ov.get("duplicates"), dict) else {}
    words = f"{failed} failed" + (f", latest {FAILURES_SHOWN} below" if failed > FAILURES_SHOWN
                                  else "")
    text = Text(words, style="red" if failed else "")
    text.append(f" · paid twice {_int(dup.get('total'))}",
                style="bold red" if _int(dup.get("total")) else "")
    return text


def _error_words(error: Any) -> str:
    if not isinstance(error, dict):
        return "no error recorded"
    code, message = error.get("code"), error.get("message") or ""
    return f"{code}: {message}" if code is not None else message or "no error recorded"
