"""Peer: Celery's own ``rate_limit`` on the task ("20 per 10 s" written as "2/s").

What users do: the rule is divided into a per-second rate and put on the task. Celery applies
it per worker *instance* (a token bucket in each worker's consumer), not fleet-wide: N worker
processes may call N x 2 per second together. A throttled answer (code 430) is retried with
Celery's exponential backoff and jitter (``autoretry_for``). At-least-once settings a user
would pick for a job that must not be lost: ``acks_late`` + ``reject_on_worker_lost``,
prefetch 1.
"""

from __future__ import annotations

from peers import upstream

app = upstream.celery_app("peer_celery_ratelimit")


@app.task(name="peer.generate", rate_limit="2/s", autoretry_for=(upstream.Throttled,),
          retry_backoff=True, retry_backoff_max=30, retry_jitter=True, max_retries=20)
def generate(title: str) -> str:
    return upstream.create(title)
