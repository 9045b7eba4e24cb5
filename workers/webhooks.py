"""Caller notifications: signed webhooks to a job's ``notify_url`` when it ends.

Each delivery is a POST of ``{"event": "job.<state>", "job": {...}}`` with the header
``X-Backbeat-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; receivers
recompute it and refuse old timestamps. Failures retry with exponential backoff and full jitter,
bounded; the job record shows ``notify`` = pending | delivered | failed with the last error.
Only http(s) URLs; loopback, private, link-local and reserved targets are refused unless
``BACKBEAT_WEBHOOK_ALLOW_PRIVATE`` is set, at enqueue and again at delivery (DNS can change).
Due deliveries are leased as they are claimed; a cycle starts deliveries only for LEASE_MS and the
lease also covers the longest one delivery can take, so two beats never deliver one twice.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from urllib.parse import urlsplit

import requests
from marshmallow import ValidationError

from ..config.settings import Secret
from .runtime import Runtime

log = logging.getLogger(__name__)

#: deliveries claimed per cycle, and how long a cycle starts deliveries on them (ms); their
#: lease is this plus the longest one delivery can take (longest_delivery_ms)
BATCH = 50
LEASE_MS = 60_000
#: backoff between attempts: full jitter over base * 2**n, capped (seconds)
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 600.0
#: seconds to wait for a receiver: to connect, and then for each read of its answer
TIMEOUT_S = 10.0


def sign(secret: Secret, body: bytes, timestamp: int) -> str:
    """The ``X-Backbeat-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.reveal().encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def check_notify_url(url: str, allow_private: bool) -> None:
    """Raise a field-level ValidationError when ``url`` may not receive webhooks."""
    reason = _refusal(url, allow_private, resolve=False)
    if reason:
        raise ValidationError({"notify_url": [reason]})


def _refusal(url: str, allow_private: bool, resolve: bool) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Must be an http(s) URL."
    if allow_private:
        return None
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "Loopback and private addresses are not allowed."
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return None
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError:
            return "Host does not resolve."
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if any(not a.is_global for a in addresses):
        return "Loopback and private addresses are not allowed."
    return None


def deliver_due(rt: Runtime) -> int:
    """Deliver the notifications that are due; returns how many were attempted. What the
    cycle cannot start within LEASE_MS of its claim is handed back, due at once."""
    until = time.monotonic() + LEASE_MS / 1000  # read before the claim: errs on the safe side
    ids = rt.store.claim_due(rt.keys.notify, BATCH, LEASE_MS + longest_delivery_ms())
    for index, job_id in enumerate(ids):
        if time.monotonic() >= until:  # a delivery started now could outlive the lease
            for rest in ids[index:]:
                rt.store.reschedule(rt.keys.notify, rest, 0)
            return index
        deliver_one(rt, job_id)
    return len(ids)


def longest_delivery_ms() -> int:
    """The longest one delivery can take once started: DNS for the check and for the
    connection, connect and read, each taken as TIMEOUT_S (a receiver answering in time)."""
    return int(4 * TIMEOUT_S * 1000)


def deliver_one(rt: Runtime, job_id: str) -> bool:
    """One delivery attempt for one job; reschedules or gives up on failure."""
    job = rt.store.get(job_id)
    if job is None or not job.get("notify_url"):
        rt.redis.zrem(rt.keys.notify, job_id)
        return False
    url, key = job.get("notify_url"), rt.keys.job(job_id)
    body = json.dumps({"event": f"job.{job.state.value}", "job": job.to_public()},
                      separators=(",", ":")).encode()
    error = _refusal(url, rt.settings.webhook_allow_private, resolve=True)
    if error is None:
        try:
            resp = requests.post(url, data=body, timeout=TIMEOUT_S, allow_redirects=False,
                                 headers={"Content-Type": "application/json",
                                          "X-Backbeat-Signature": sign(rt.secret, body,
                                                                       int(time.time()))})
            error = None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}"
    attempts = rt.redis.hincrby(key, "notify_attempts", 1)
    if error is None:
        rt.redis.hset(key, mapping={"notify_state": "delivered", "notify_error": ""})
        rt.redis.zrem(rt.keys.notify, job_id)
        return True
    if attempts >= rt.settings.webhook_max_attempts:
        rt.redis.hset(key, mapping={"notify_state": "failed", "notify_error": error})
        rt.redis.zrem(rt.keys.notify, job_id)
        log.warning("webhook for job %s failed for good after %d attempts: %s",
                    job_id, attempts, error)
        return False
    rt.redis.hset(key, mapping={"notify_state": "retrying", "notify_error": error})
    delay_s = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempts))
    rt.store.reschedule(rt.keys.notify, job_id, int(delay_s * 1000))
    return False
