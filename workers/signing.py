"""Every HMAC signature backbeat makes or checks, each HMAC-SHA256:

- callback URLs: ``?sig=`` names the job the provider calls back for (``sign``, ``verify``);
- kie's optional callback signing, ``X-Webhook-Signature`` (``verify_provider_signature``);
- outgoing webhooks, ``X-Backbeat-Signature`` (``sign_webhook``, used by webhooks.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

from redis import Redis

from ..config.settings import Secret, Settings
from .keys import Keys


def _mac(key: Secret, message: bytes) -> hmac.HMAC:
    return hmac.new(key.reveal().encode(), message, hashlib.sha256)


def sign(secret: Secret, job_id: str) -> str:
    """The URL-safe signature that authorises callbacks for ``job_id``."""
    return _mac(secret, f"callback:{job_id}".encode()).hexdigest()[:40]


def verify(secret: Secret, job_id: str, signature: str | None) -> bool:
    """Constant-time check of a callback signature."""
    if not signature:
        return False
    return hmac.compare_digest(sign(secret, job_id).encode(), signature.encode())


def verify_provider_signature(key: Secret, payload: object, timestamp: str | None,
                              signature: str | None, max_age_s: float = 300.0) -> bool:
    """kie's optional callback signing: ``X-Webhook-Signature`` =
    base64(HMAC-SHA256(key, task_id + "." + X-Webhook-Timestamp)), within ``max_age_s``."""
    if not timestamp or not signature or not isinstance(payload, dict):
        return False
    data = payload.get("data")
    task_id = data.get("task_id") or data.get("taskId") if isinstance(data, dict) else None
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    if not isinstance(task_id, str) or age > max_age_s:
        return False
    mac = _mac(key, f"{task_id}.{timestamp}".encode())
    return hmac.compare_digest(base64.b64encode(mac.digest()), signature.strip().encode())


def sign_webhook(secret: Secret, body: bytes, timestamp: int) -> str:
    """The ``X-Backbeat-Signature`` header value for a webhook ``body`` sent at ``timestamp``:
    ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    return f"t={timestamp},v1={_mac(secret, f'{timestamp}.'.encode() + body).hexdigest()}"


def callback_url(settings: Settings, secret: Secret, job_id: str) -> str:
    """The ``callBackUrl`` sent to the provider for one job: the job id, signed."""
    return (f"{settings.callback_base_url}/v1/callbacks/{quote(job_id, safe='')}"
            f"?sig={sign(secret, job_id)}")


def resolve_secret(settings: Settings, redis: Redis) -> Secret:
    """BACKBEAT_SECRET, or in dev a random secret shared by every process through Redis."""
    if settings.secret:
        return settings.secret
    if settings.is_prod:
        raise ValueError("BACKBEAT_SECRET is required when BACKBEAT_ENV=prod")
    key = Keys(settings.key_prefix).dev_secret
    redis.set(key, secrets.token_hex(32), nx=True)
    return Secret(redis.get(key) or "")
