"""Benchmark: a credit floor against learning of an empty account from the provider's error.

One account with 300 credits, 10 per accepted submission (the simulator's ledger), 40 jobs:
more than the balance pays for. Two arms, the same workers and rule:

- **floor** (backbeat): balance read every 2 s (``BACKBEAT_CREDITS_INTERVAL``), the cost
  learned from the reads, ``credit_floor`` 100: submissions stop before the balance would fall
  below 100, and the first read after a top-up resumes them;
- **error** (no balance reads, as a client without the credit endpoint): submissions go on
  until the provider answers "insufficient credits", which pauses the account until a probe
  (``BACKBEAT_PAUSE_PROBE_INTERVAL``, 20 s here for both arms) finds credits again.

After the submissions stop, the account is topped up to 1000 credits; every job must end
``succeeded``. Counted at the simulator: accepted calls before the top-up, "insufficient
credits" answers, and the time from the top-up to the next accepted call.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import Fleet, Log, Section, Stack, enqueue_backlog, table, wait_for

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.workers.runtime import Runtime

GOAL = ("with a credit floor: 0 'insufficient credits' answers, the balance never below the "
        "floor, and submissions back within one read interval of a top-up")
BALANCE, COST, FLOOR, JOBS, TOPUP = 300, 10, 100, 40, 1000
READ_S, PROBE_S = 2, 20


def run_arm(stack: Stack, arm: str, limit: int, window_s: float) -> dict:
    prefix = f"bc{arm}"
    stack.clear_prefix(prefix)
    stack.sim.reset(rate_limit=limit, rate_window_s=window_s, credits_balance=BALANCE,
                    credit_cost=COST)
    pool = [{"name": "main", "api_key": stack.api_key, "base_url": stack.sim.url,
             **({"credit_floor": FLOOR} if arm == "floor" else {})}]
    env = stack.env(prefix, BACKBEAT_SUBMIT_RATE=f"{limit}/{window_s:g}s",
                    BACKBEAT_ACCOUNTS=json.dumps(pool),
                    BACKBEAT_CREDITS_INTERVAL=str(READ_S if arm == "floor" else 0),
                    BACKBEAT_PAUSE_PROBE_INTERVAL=str(PROBE_S))
    settings = Settings.from_env(env)
    rt = Runtime(settings)
    state_key = rt.keys.limiter_state(rt.primary.id)
    with Fleet(env, Path(stack.run_dir) / prefix, 2, 2):
        if arm == "floor":  # the first balance read is in before the backlog comes
            wait_for(lambda: rt.redis.hget(state_key, "credits"), 60, "a first balance read")
        enqueue_backlog(Client(settings), JOBS, prefix)
        previous, still = -1, 0
        deadline = time.monotonic() + 120
        while still < 4 and time.monotonic() < deadline:  # stopped: no new accept for 4 s
            time.sleep(1)
            accepted = stack.sim.stats()["accepted"]
            still = still + 1 if accepted == previous else 0
            previous = accepted
        before = stack.sim.stats()
        topped_at = time.monotonic()
        stack.sim.set_knobs(credits_balance=TOPUP)  # a top-up: every key back to 1000
        wait_for(lambda: stack.sim.stats()["accepted"] > before["accepted"], 120,
                 "a submission after the top-up")
        resumed_s = time.monotonic() - topped_at
        client = Client(settings)
        ids = [j["id"] for j in client.list(limit=200)[0]]
        done = [client.wait(job_id, timeout=180)["state"] for job_id in ids]
        after = stack.sim.stats()
    stack.clear_prefix(prefix)
    return {"arm": arm, "accepted_before": before["accepted"],
            "credits_answers": after["credits"], "resumed_s": resumed_s,
            "lowest": BALANCE - COST * before["accepted"],
            "succeeded": done.count("succeeded"), "jobs": len(done)}


def run(stack: Stack, quick: bool, log: Log) -> Section:
    limit, window_s = (10, 2.0) if quick else (20, 10.0)
    log(f"credits: {BALANCE} credits, {COST} per accepted call, {JOBS} jobs, rule {limit} per "
        f"{window_s:g} s; floor {FLOOR} read every {READ_S} s vs no reads (pause probe "
        f"every {PROBE_S} s)")
    rows, results = [], {}
    for arm in ("floor", "error"):
        r = run_arm(stack, arm, limit, window_s)
        results[arm] = r
        log(f"  {arm}: accepted before the top-up {r['accepted_before']} (lowest balance "
            f"{r['lowest']}), insufficient-credits answers {r['credits_answers']}, next "
            f"accept {r['resumed_s']:.1f} s after the top-up, {r['succeeded']}/{r['jobs']} "
            "succeeded")
        rows.append([{"floor": "credit floor (backbeat)", "error": "provider's error only"}[arm],
                     r["accepted_before"], r["lowest"], r["credits_answers"],
                     f"{r['resumed_s']:.1f}", f"{r['succeeded']} / {r['jobs']}"])
    floor, error = results["floor"], results["error"]
    met = (floor["credits_answers"] == 0 and floor["lowest"] >= FLOOR
           and floor["resumed_s"] <= READ_S + 3 and floor["succeeded"] == JOBS)
    body = "\n".join([
        f"One account: {BALANCE} credits, {COST} credits per accepted call (the simulator's "
        f"ledger), {JOBS} jobs, rule {limit} per {window_s:g} s, 2 workers x 2 slots. After "
        f"the submissions stop, the account is topped up to {TOPUP}.",
        "",
        table(["arm", "accepted before the top-up", "lowest balance", "insufficient-credits "
               "answers", "next accept after the top-up (s)", "succeeded"], rows),
        "",
        f"- floor {FLOOR}, balance read every {READ_S} s, cost learned from the reads: the "
        "provider never had to refuse a call, and the first read after the top-up resumed "
        f"submissions ({floor['resumed_s']:.1f} s vs {error['resumed_s']:.1f} s waiting for "
        "the pause's probe)",
        f"- goal ({GOAL}): **{'met' if met else 'MISSED'}**",
    ])
    return Section("credits", "Credits: a floor vs the provider's error", GOAL, body, met=met)
