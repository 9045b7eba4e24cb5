"""Redis memory per queued job, measured through the real producer path.

N jobs (full 100,000; quick 5,000) are enqueued with the Python client (``Client.enqueue``:
validation, ``create_job.lua``, then the broker message or the producer's lane), each with
its own idempotency key, by ENQUEUE_THREADS threads (the producer path has no batch call), with
no worker running: every job stays queued. Two cases, each under its own key prefix on the
same redis-server, one after the other:

- *lanes*: the shipped submit rate (20 per 10 s): past the first few, a new job waits in its
  producer's lane (workers/lanes.py), no broker message;
- *broker*: a submit rate so high the lanes never take a job: every job gets its Celery
  message in the ``submit`` list (the backlog of a deployment whose limit is far above its
  arrival rate, or of one before lanes).

Bytes per job = ``INFO memory`` ``used_memory`` delta / N. The breakdown: ``MEMORY USAGE
SAMPLES 0`` of a sample of each per-job key family (job hash, history list, idempotency key)
times its count, and of every shared key (the indexes, the events stream, the broker lists,
the lanes); the rest of the delta is what MEMORY USAGE does not see (the keyspace's dict
entries, the expires dict, allocator slack). What-ifs are measured on scratch copies of a
sample job's key (the same fields written to a fresh key under another encoding or with
shorter names), never on the jobs themselves.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

from common import Log, Section, Stack, table
from redis import Redis

from backbeat.api.client import Client
from backbeat.config.settings import Settings
from backbeat.workers.keys import Keys

GOAL = "Redis bytes per queued job <= 2 KB at 100k jobs (records, indexes, messages)"
TARGET_BYTES = 2048
ENQUEUE_THREADS = 4
SAMPLE = 200
PARAMS = {"uploadUrl": "https://example.com/v.mp3", "tags": "rock", "negativeTags": "metal"}
CASES = {"lanes": {}, "broker": {"BACKBEAT_SUBMIT_RATE": f"{10**9}/1s",
                                  "BACKBEAT_SUBMIT_BURST": str(10**9)}}
#: jobs per case, full run (quick: QUICK_N each). The broker case's producer is about half as
#: fast (a Celery send per job), so its full run is shorter; its bytes per job are linear in N
#: (every shared key is past its small encoding long before)
FULL_N = {"lanes": 100_000, "broker": 30_000}
QUICK_N = 5_000


def _used(redis: Redis) -> int:
    return int(redis.info("memory")["used_memory"])


def _usage(redis: Redis, key: str) -> int:
    return int(redis.memory_usage(key, samples=0) or 0)


def _enqueue(env: dict[str, str], n: int, tag: str, log: Log) -> float:
    """N jobs through Client.enqueue from ENQUEUE_THREADS threads; the enqueue rate."""
    errors: list[BaseException] = []
    done = [0]
    lock = threading.Lock()

    def produce(k: int) -> None:
        client = Client(Settings.from_env(env))
        try:
            for i in range(k, n, ENQUEUE_THREADS):
                key = f"{tag}-{i:07d}"
                client.enqueue("add-instrumental", {**PARAMS, "title": key},
                               idempotency_key=key)
                if i % 1000 == 0:
                    with lock:
                        done[0] = i
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(k,), daemon=True)
               for k in range(ENQUEUE_THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    last_log = start
    for t in threads:
        while t.is_alive():
            t.join(1.0)
            if time.perf_counter() - last_log > 20:
                last_log = time.perf_counter()
                log(f"    ... {done[0]:,} of {n:,} enqueued")
            if time.perf_counter() - start > 60 + n / 200:  # bounded: >= 200 jobs/s
                raise TimeoutError(f"enqueueing {n} jobs took too long")
    if errors:
        raise RuntimeError(f"enqueue failed: {errors[0]!r}")
    return n / (time.perf_counter() - start)


def _sampled(redis: Redis, keys: list[str]) -> float:
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return statistics.mean(int(v or 0) for v in pipe.execute())


def _encoding(redis: Redis, key: str) -> str:
    return str(redis.object("encoding", key) or "-")


def _scratch_hash(redis: Redis, fields: dict[str, str], listpack_value: int | None = None
                  ) -> tuple[int, str]:
    """MEMORY USAGE of a fresh hash holding ``fields`` (with hash-max-listpack-value raised
    to ``listpack_value`` while it is written, when given); the key is deleted again."""
    key = "memory-bench:scratch"
    old = redis.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
    try:
        if listpack_value is not None:
            redis.config_set("hash-max-listpack-value", str(listpack_value))
        redis.delete(key)
        redis.hset(key, mapping=fields)
        return _usage(redis, key), _encoding(redis, key)
    finally:
        redis.delete(key)
        redis.config_set("hash-max-listpack-value", old)


#: compact field names for the what-if (one or two letters each)
def _short(fields: dict[str, str]) -> dict[str, str]:
    return {f"{name[0]}{k}": v for k, (name, v) in enumerate(fields.items())}


def _case(stack: Stack, name: str, n: int, log: Log) -> dict[str, Any]:
    prefix = f"mem{name}"
    env = stack.env(prefix, BACKBEAT_CREDITS_INTERVAL="0", **CASES[name])
    redis = Redis(port=stack.redis_port, decode_responses=True)
    keys = Keys(prefix)
    stack.clear_prefix(prefix)
    # warm-up: scripts loaded, the limiter's and lanes' own keys created (not per job)
    _enqueue(env, 20, f"{prefix}-warm", lambda _line: None)
    stack.clear_prefix(prefix)
    redis.execute_command("MEMORY", "PURGE")
    before = _used(redis)
    rate = _enqueue(env, n, prefix, log)
    redis.execute_command("MEMORY", "PURGE")
    after = _used(redis)
    per_job = (after - before) / n
    log(f"  {name}: {n:,} jobs at {rate:,.0f}/s; used_memory +{after - before:,} B = "
        f"{per_job:,.0f} B/job")

    ids = [m for m in redis.zrange(keys.jobs, 0, SAMPLE - 1)]
    step = max(1, n // SAMPLE)
    ids = redis.zrange(keys.jobs, 0, -1)[::step][:SAMPLE] or ids
    idem = [redis.hget(keys.job(i), "idempotency_key") for i in ids]
    rows: list[tuple[str, int, float, str]] = []  # family, count, bytes total, encoding
    job_avg = _sampled(redis, [keys.job(i) for i in ids])
    rows.append(("job hash (bb:job:<id>)", n, job_avg * n, _encoding(redis, keys.job(ids[0]))))
    params_avg = _sampled(redis, [keys.params(i) for i in ids])
    rows.append(("params string (params:<id>)", n, params_avg * n,
                 _encoding(redis, keys.params(ids[0]))))
    hist_avg = _sampled(redis, [keys.hist(i) for i in ids])
    rows.append(("history list (hist:<id>)", n, hist_avg * n, _encoding(redis, keys.hist(ids[0]))))
    idem_avg = _sampled(redis, [keys.idem(k) for k in idem if k])
    rows.append(("idempotency key (idem:<key>)", n, idem_avg * n,
                 _encoding(redis, keys.idem(idem[0]))))
    shared: list[tuple[str, list[str]]] = [
        ("state index zset (state:queued)", [keys.queued]),
        ("jobs zset (jobs)", [keys.jobs]),
        ("deadline zset (deadline)", [keys.deadline]),
        ("outbox zset (outbox)", [keys.outbox]),
        ("events stream (events, capped ~100k)", [keys.events]),
        ("Celery submit lists (messages)", keys.submit_queues),
        ("lanes (lane:<producer> zset + lane-of hash + lanes set + seq)",
         [keys.lane("default"), keys.lane_of, keys.lanes, keys.lane_seq]),
    ]
    for label, group in shared:
        total = sum(_usage(redis, k) for k in group if redis.exists(k))
        enc = ", ".join(sorted({_encoding(redis, k) for k in group if redis.exists(k)})) or "-"
        rows.append((label, n, float(total), enc))
    known = sum(r[2] for r in rows)
    rows.append(("not seen by MEMORY USAGE (keyspace dict entries, expires, allocator)", n,
                 (after - before) - known, ""))

    sample = redis.hgetall(keys.job(ids[0]))
    message = ""
    for q in keys.submit_queues:
        if redis.llen(q):
            message = redis.lindex(q, -1) or ""
            break
    whatif = {
        "job hash as it is": _usage(redis, keys.job(ids[0])),
        "same fields, listpack (hash-max-listpack-value 512)": _scratch_hash(
            redis, sample, 512)[0],
        "compact field names, listpack": _scratch_hash(redis, _short(sample), 512)[0],
    }
    longest = max(sample.items(), key=lambda kv: len(kv[1]))
    return {"name": name, "n": n, "rate": rate, "per_job": per_job, "rows": rows,
            "delta": after - before, "sample": sample, "message": message,
            "whatif": whatif, "longest": longest, "hist": redis.lrange(keys.hist(ids[0]), 0, -1),
            "prefix": prefix}


def run(stack: Stack, quick: bool, log: Log) -> Section:
    counts = {name: QUICK_N if quick else FULL_N[name] for name in CASES}
    n = counts["lanes"]
    log(f"memory: {', '.join(f'{k} {v:,}' for k, v in counts.items())} jobs through "
        f"Client.enqueue ({ENQUEUE_THREADS} threads), no workers, an idempotency key each")
    results = []
    try:
        for name in CASES:
            results.append(_case(stack, name, counts[name], log))
            stack.clear_prefix(results[-1]["prefix"])
    finally:
        for name in CASES:
            stack.clear_prefix(f"mem{name}")
    return _section(results, n, log)


def _section(results: list[dict[str, Any]], n: int, log: Log) -> Section:
    by = {r["name"]: r for r in results}
    families = [row[0] for row in results[0]["rows"]]
    rows = []
    for k, fam in enumerate(families):
        cells = [fam]
        for r in results:
            _label, count, total, enc = r["rows"][k]  # count: that case's N
            cells += [f"{total / count:,.0f}", enc]
        rows.append(cells)
    rows.append(["**used_memory delta / job**"] + sum(
        ([f"**{r['per_job']:,.0f}**", ""] for r in results), []))
    headers = ["key family"] + sum(([f"{r['name']}: B/job", "encoding"] for r in results), [])
    breakdown = table(headers, rows)
    for row in rows:
        log("  " + " | ".join(row))
    lanes = by["lanes"]
    sample = lanes["sample"]
    frows = sorted(((k, len(k), len(v)) for k, v in sample.items()), key=lambda x: -x[2])
    fields = table(["job hash field", "name bytes", "value bytes"],
                   [[f"`{k}`", a, b] for k, a, b in frows])
    wrows = [[k, f"{v:,}"] for k, v in lanes["whatif"].items()]
    msg = by["broker"]["message"]
    msg_note = ""
    if msg:
        try:
            body = json.loads(msg)
            parts = {k: len(json.dumps(v)) for k, v in body.items()}
            msg_note = (f"- one Celery message (broker case): {len(msg):,} bytes of JSON; "
                        "largest parts: " + ", ".join(
                            f"`{k}` {v:,} B" for k, v in sorted(parts.items(),
                                                                 key=lambda kv: -kv[1])[:4]))
        except ValueError:
            msg_note = f"- one Celery message (broker case): {len(msg):,} bytes"
    met = lanes["per_job"] <= TARGET_BYTES
    summary = ("; ".join(f"{r['name']}: **{r['per_job']:,.0f} B/job** ({r['rate']:,.0f} "
                         f"enqueues/s)" for r in results))
    log(summary.replace("**", ""))
    longest = lanes["longest"]
    counted = ", ".join(f"{r['n']:,} ({r['name']})" for r in results)
    body = "\n".join([
        breakdown, "",
        f"- queued jobs: {counted}; {summary}.",
        f"- goal ({GOAL}; judged on the *lanes* case, the shipped configuration): "
        f"**{'met' if met else 'MISSED'}**; the broker case "
        f"{'meets' if by['broker']['per_job'] <= TARGET_BYTES else 'misses'} it.",
        "- per-job families: MEMORY USAGE (SAMPLES 0) averaged over "
        f"{SAMPLE} jobs spread over the backlog, times N; shared keys: their MEMORY USAGE / N; "
        "the last row is the used_memory delta minus all of these.",
        f"- the job hash's longest value: `{longest[0]}` ({len(longest[1])} B); a hash with "
        "any value over `hash-max-listpack-value` (64 B by default) or over 128 fields is a "
        "hashtable, several times the size of a listpack.",
        msg_note,
        f"- history of a queued job: {len(lanes['hist'])} entry, "
        f"{sum(len(e) for e in lanes['hist'])} B of JSON.",
        "",
        "A sample job's record (lanes case):",
        "",
        fields, "",
        "What-if on a scratch copy of that record (MEMORY USAGE, bytes):",
        "",
        table(["job hash", "bytes"], wrows),
    ])
    return Section("memory", "Redis memory per queued job", GOAL, body, met=met)
