"""GET /metrics on a real Redis: every family is read from Redis at scrape time, has HELP and
TYPE, and shows the state set up here; the Grafana dashboard uses only exported names."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from backbeat.config.settings import Settings
from backbeat.provider.profiles import Outcome
from backbeat.workers.redis_conn import server_ms
from backbeat.workers.runtime import Runtime
from backbeat.workers.states import ORDER
from backbeat.workers.status import CREDITS_AT_FIELD, CREDITS_FIELD, metrics_text
from backbeat.workers.store import DUPLICATES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "backbeat.json"
#: a key prefix of this file's own: nothing else in the session writes under it
PREFIX = "mt"
#: every family /metrics must export (docs/OPERATIONS.md, Metrics)
FAMILIES = {
    "backbeat_jobs": "gauge", "backbeat_queue_depth": "gauge", "backbeat_parked_jobs": "gauge",
    "backbeat_uncertain_jobs": "gauge", "backbeat_in_flight_jobs": "gauge",
    "backbeat_reconcile_lag_seconds": "gauge",
    "backbeat_duplicate_upstream_tasks": "counter", "backbeat_provider_calls": "counter",
    "backbeat_limit": "gauge", "backbeat_limit_window_seconds": "gauge",
    "backbeat_effective_limit": "gauge", "backbeat_window_calls": "gauge",
    "backbeat_throttle_factor": "gauge", "backbeat_cooldown_seconds": "gauge",
    "backbeat_throttles": "counter", "backbeat_rate_cuts": "counter",
    "backbeat_breaker_open": "gauge", "backbeat_breaker_half_open": "gauge",
    "backbeat_breaker_trips": "counter", "backbeat_paused": "gauge",
    "backbeat_pause_seconds": "gauge", "backbeat_lane_jobs": "gauge",
}


@pytest.fixture
def rt(redis) -> Runtime:
    """A Runtime on the test Redis under PREFIX, with every key of that prefix removed."""
    for key in redis.scan_iter(f"{PREFIX}:*", count=1000):
        redis.delete(key)
    return Runtime(Settings.from_env({**os.environ, "BACKBEAT_KEY_PREFIX": PREFIX}))


class Scrape:
    """One exposition, parsed: ``value(name, **labels)`` of a sample (KeyError if absent)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = {(s.name, frozenset(s.labels.items())): s.value
                        for f in self.families for s in f.samples}

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def names(self) -> set[str]:
        return {name for name, _ in self.samples} | {f.name for f in self.families}


def scrape(rt: Runtime) -> Scrape:
    return Scrape(metrics_text(rt).decode())


def dashboard_names() -> set[str]:
    """Every backbeat_* metric named in the dashboard's queries (panels and variables)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition", "query") and isinstance(value, str):
                    found.update(re.findall(r"\bbackbeat_[a-z0-9_]+", value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    return found


def test_every_family_has_help_and_type_and_the_parser_accepts_it(rt):
    s = scrape(rt)
    helped = {line.split()[2] for line in s.text.splitlines() if line.startswith("# HELP ")}
    typed = {line.split()[2]: line.split()[3] for line in s.text.splitlines()
             if line.startswith("# TYPE ")}
    assert {f.name: f.type for f in s.families} == FAMILIES
    for f in s.families:
        written = f.name + "_total" if f.type == "counter" else f.name
        assert written in helped and typed[written] == f.type, f.name
        assert f.documentation.strip(), f.name
        assert f.samples, f.name  # every family has a value even on an empty Redis
    assert all(line.startswith(("# HELP backbeat_", "# TYPE backbeat_", "backbeat_"))
               for line in s.text.splitlines() if line)


def test_jobs_by_state_queues_and_schedules_match_redis(rt, redis):
    k = rt.keys
    for n, state in enumerate(ORDER):  # state i holds i + 1 jobs
        redis.zadd(k.state(state), {f"{state}-{j}": j for j in range(n + 1)})
    redis.rpush(k.submit_queues[0], "a", "b")
    redis.rpush(k.submit_queues[2], "c")  # a priority step's own list
    redis.rpush(f"{PREFIX}:celery:reconcile", "r")
    redis.zadd(k.parked, {"p1": 1, "p2": 2, "p3": 3})
    redis.zadd(k.uncertain, {"u1": 1})
    redis.zadd(k.poll, {"f1": 9e15, "f2": 9e15})  # far in the future: nothing due
    redis.set(k.metric(DUPLICATES), 3)
    s = scrape(rt)
    assert {st.value: s.value("backbeat_jobs", state=st.value) for st in ORDER} == {
        st.value: n + 1 for n, st in enumerate(ORDER)}
    assert s.value("backbeat_queue_depth", queue="submit") == 3
    assert s.value("backbeat_queue_depth", queue="reconcile") == 1
    assert s.value("backbeat_parked_jobs") == 3
    assert s.value("backbeat_uncertain_jobs") == 1
    assert s.value("backbeat_in_flight_jobs") == 2
    assert s.value("backbeat_reconcile_lag_seconds") == 0
    assert s.value("backbeat_duplicate_upstream_tasks_total") == 3


def test_reconcile_lag_is_the_age_of_the_oldest_due_poll(rt, redis):
    now = server_ms(redis)
    redis.zadd(rt.keys.poll, {"late": now - 5_000, "later": now - 1_000, "next": now + 60_000})
    lag = scrape(rt).value("backbeat_reconcile_lag_seconds")
    assert 5.0 <= lag < 15.0, lag
    redis.zrem(rt.keys.poll, "late", "later")
    assert scrape(rt).value("backbeat_reconcile_lag_seconds") == 0


def test_provider_answers_count_by_outcome_and_move_the_limiter_figures(rt):
    lim, acct = rt.submit_limiter, rt.account
    unused = lim.try_acquire()
    assert unused.granted
    lim.release(unused)  # a grant given back: no call, not counted
    for outcome in (Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.REJECTED):
        lim.report(outcome)
    lim.report(Outcome.THROTTLED, None, 60)  # Retry-After 60 s: a cool-down still running
    lim.report(Outcome.UNCERTAIN)
    rt.poll_limiter.report(Outcome.ACCEPTED)
    rt.poll_limiter.report(Outcome.TRANSIENT)
    s = scrape(rt)
    calls = {(dict(labels)["purpose"], dict(labels)["outcome"]): v
             for (name, labels), v in s.samples.items() if name == "backbeat_provider_calls_total"}
    assert {key: v for key, v in calls.items() if v} == {
        ("submit", "accepted"): 2, ("submit", "rejected"): 1, ("submit", "throttled"): 1,
        ("submit", "uncertain"): 1, ("poll", "accepted"): 1, ("poll", "transient"): 1}
    assert set(calls) == {(p, o.value) for p in ("submit", "poll") for o in Outcome}
    # the suite's 20/10s and the shipped beta 0.85: one cut leaves floor(20 * 0.85) = 17
    assert (str(rt.settings.submit_rate), rt.settings.throttle_beta) == ("20/10s", 0.85)
    assert s.value("backbeat_limit", account=acct, purpose="submit") == 20
    assert s.value("backbeat_limit_window_seconds", account=acct, purpose="submit") == 10
    assert s.value("backbeat_throttle_factor", account=acct, purpose="submit") == (
        pytest.approx(0.85))
    assert s.value("backbeat_effective_limit", account=acct, purpose="submit") == 17
    assert s.value("backbeat_effective_limit", account=acct, purpose="poll") == (
        rt.settings.poll_rate.limit)
    assert s.value("backbeat_throttles_total", account=acct, purpose="submit") == 1
    assert s.value("backbeat_rate_cuts_total", account=acct, purpose="submit") == 1
    assert 30 < s.value("backbeat_cooldown_seconds", account=acct, purpose="submit") <= 72
    assert s.value("backbeat_cooldown_seconds", account=acct, purpose="poll") == 0
    assert s.value("backbeat_throttles_total", account=acct, purpose="poll") == 0
    assert s.value("backbeat_breaker_trips_total", account=acct) == 0


def test_window_calls_count_the_grants_the_log_holds(rt):
    lim = rt.poll_limiter  # a burst of its limit: grants back to back
    grants = [lim.try_acquire() for _ in range(3)]
    assert all(g.granted for g in grants)  # unanswered: each counts as arriving now
    s = scrape(rt)
    assert s.value("backbeat_window_calls", account=rt.account, purpose="poll") == 3
    assert s.value("backbeat_window_calls", account=rt.account, purpose="submit") == 0


def test_breaker_open_half_open_and_trips(rt, redis):
    lim, acct = rt.submit_limiter, rt.account
    lim.report(Outcome.MAINTENANCE)
    s = scrape(rt)
    assert s.value("backbeat_breaker_open", account=acct) == 1
    assert s.value("backbeat_breaker_half_open", account=acct) == 0
    assert s.value("backbeat_breaker_trips_total", account=acct) == 1
    redis.hset(lim.state_key, "breaker:until", server_ms(redis) - 1)  # its open time is over
    s = scrape(rt)
    assert s.value("backbeat_breaker_open", account=acct) == 1
    assert s.value("backbeat_breaker_half_open", account=acct) == 1
    probe = lim.try_acquire()
    assert probe.granted and probe.kind == "probe"
    lim.report(Outcome.ACCEPTED, probe)  # the probe's answer closes it
    s = scrape(rt)
    assert s.value("backbeat_breaker_open", account=acct) == 0
    assert s.value("backbeat_breaker_half_open", account=acct) == 0
    assert s.value("backbeat_breaker_trips_total", account=acct) == 1
    assert s.value("backbeat_provider_calls_total", account=acct, purpose="submit",
                   outcome="maintenance") == 1


def test_pause_reason_and_duration(rt, redis):
    lim, acct = rt.submit_limiter, rt.account
    s = scrape(rt)
    assert {r: s.value("backbeat_paused", account=acct, reason=r)
            for r in ("manual", "credits", "unauthorized", "not_found")} == {
        "manual": 0, "credits": 0, "unauthorized": 0, "not_found": 0}
    assert s.value("backbeat_pause_seconds", account=acct) == 0
    lim.report(Outcome.CREDITS)
    redis.hset(lim.state_key, "pause:since", server_ms(redis) - 7_000)
    s = scrape(rt)
    assert s.value("backbeat_paused", account=acct, reason="credits") == 1
    assert s.value("backbeat_paused", account=acct, reason="manual") == 0
    assert 7.0 <= s.value("backbeat_pause_seconds", account=acct) < 17.0
    lim.resume()
    lim.pause("disk full, says ops")  # an operator's own words: a label of its own
    s = scrape(rt)
    assert s.value("backbeat_paused", account=acct, reason="disk full, says ops") == 1
    assert s.value("backbeat_paused", account=acct, reason="credits") == 0
    lim.resume()
    s = scrape(rt)
    assert not any(v for (name, _), v in s.samples.items() if name == "backbeat_paused")
    assert s.value("backbeat_pause_seconds", account=acct) == 0


def test_the_account_label_is_the_anonymised_id_never_the_key(rt):
    rt.submit_limiter.report(Outcome.ACCEPTED)
    s = scrape(rt)
    accounts = {dict(labels).get("account") for _, labels in s.samples} - {None}
    assert accounts == {rt.account}
    assert rt.settings.api_key.reveal() not in s.text


def test_route_serves_the_app_registry_with_the_latest_content_type(rt, redis):
    from backbeat.api.web import create_app

    app = create_app(rt.settings)
    redis.zadd(rt.keys.queued, {"q1": 1, "q2": 2})
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == CONTENT_TYPE_LATEST
    s = Scrape(answer.get_data(as_text=True))
    assert s.value("backbeat_jobs", state="queued") == 2  # read at scrape time
    redis.zadd(rt.keys.queued, {"q3": 3})
    again = Scrape(app.test_client().get("/metrics").get_data(as_text=True))
    assert again.value("backbeat_jobs", state="queued") == 3
    # the process-global registry is left alone (one registry per app)
    assert not any(f.name.startswith("backbeat_") for f in REGISTRY.collect())


def test_every_metric_the_dashboard_uses_is_exported(rt):
    # the credit families appear once a balance has been read (tasks/credits.py)
    rt.redis.hset(rt.keys.limiter_state(rt.account),
                  mapping={CREDITS_FIELD: "1200", CREDITS_AT_FIELD: server_ms(rt.redis)})
    used = dashboard_names()
    assert used, "no backbeat_ metric found in the dashboard"
    missing = used - scrape(rt).names()
    assert not missing, f"the dashboard uses metrics /metrics does not export: {missing}"


def test_the_dashboard_is_importable_with_a_prometheus_input():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    assert dash["__inputs"][0]["pluginId"] == "prometheus"
    assert dash["uid"] and dash["title"] and dash["id"] is None
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
