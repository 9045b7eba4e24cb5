"""Caller notifications: signed webhooks to a job's ``notify_url`` when it ends.

Each delivery is a POST of ``{"event": "job.<state>", "job": {...}}`` with the header
``X-Backbeat-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; receivers
recompute it and refuse old timestamps. Failures retry with exponential backoff and full jitter,
bounded; the job record shows ``notify`` = pending | delivered | failed with the last error.
Only http(s) URLs. Unless ``BACKBEAT_WEBHOOK_ALLOW_PRIVATE`` is set, a target is refused when its
host is, or resolves to, an address that is not globally reachable: loopback, private (RFC 1918,
fc00::/7), link-local (169.254.0.0/16 with the cloud metadata address, fe80::/10), shared,
reserved, unspecified, multicast, and IPv6 forms that embed such an IPv4 address
(``::ffff:127.0.0.1``, ``::127.0.0.1``, 6to4, Teredo, NAT64), or legacy numeric forms
(``2130706433``, ``0x7f.1``). Checked at enqueue (a name that does not resolve then is accepted:
each delivery checks again) and at every delivery, where the connection is also pinned to the
address just checked (so DNS answering differently at connect time, "rebinding", is no way
round). Redirects are never followed: a 3xx answer is a failed attempt.
Due deliveries are leased as they are claimed; a cycle starts deliveries only for CYCLE_LEASE_MS
and the lease also covers the longest one delivery can take, so two beats never deliver one
twice.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import time
from urllib.parse import urlsplit

import requests
from marshmallow import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError

from .leases import CYCLE_LEASE_MS
from .resilience import Backoff
from .runtime import Runtime
from .signing import sign_webhook

log = logging.getLogger(__name__)

#: deliveries claimed per cycle, and how long a cycle starts deliveries on them (ms); their
#: lease is this plus the longest one delivery can take (longest_delivery_ms)
BATCH = 50
#: backoff between attempts: full jitter over base * 2**n, capped (seconds)
BACKOFF = Backoff(base_s=2.0, cap_s=600.0)
#: seconds to wait for a receiver: to connect, and then for each read of its answer
TIMEOUT_S = 10.0


#: the refusal message for a target that is or resolves to a non-public address
PRIVATE = "Loopback and private addresses are not allowed."
#: NAT64 prefixes whose last 32 bits are an IPv4 address (RFC 6052, RFC 8215)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_notify_url(url: str, allow_private: bool) -> None:
    """Raise a field-level ValidationError when ``url`` may not receive webhooks (resolving
    its name; one that does not resolve now is accepted, as each delivery checks again)."""
    reason = _refusal(url, allow_private, resolve=True, unresolved_ok=True)
    if reason:
        raise ValidationError({"notify_url": [reason]})


def refused_address(address: Address) -> bool:
    """Whether ``address`` is not a public one, or embeds an IPv4 address that is not."""
    if not address.is_global or address.is_multicast:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        return any(refused_address(v4) for v4 in _embedded_ipv4(address))
    return False


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo:
        found.extend(address.teredo)
    if int(address) >> 32 == 0:  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some)
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if any(address in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _literal(host: str) -> Address | None:
    """The address a host names without DNS: an IP literal, or a legacy numeric IPv4 form
    (``2130706433``, ``0x7f.1``, ``017700000001``) that resolvers accept; else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def resolve_host(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (socket.getaddrinfo: OSError when it does not)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _refusal(url: str, allow_private: bool, resolve: bool,
             unresolved_ok: bool = False) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Must be an http(s) URL."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Must be an http(s) URL."
    if allow_private:
        return None
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return PRIVATE
    literal = _literal(host.split("%", 1)[0])
    if literal is not None:
        return PRIVATE if refused_address(literal) else None
    if not resolve:
        return None
    try:
        addresses = resolve_host(host, port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError, ValueError):
        return None if unresolved_ok else "Host does not resolve."
    if not addresses:
        return None if unresolved_ok else "Host does not resolve."
    if any(refused_address(a) for a in addresses):
        return PRIVATE
    return None


class PrivateAddressRefused(NewConnectionError):
    """A delivery's host resolved, at connect time, to an address it may not reach."""


class _PinnedConnection(HTTPConnection):
    """Resolves the host once, refuses the connection if any address is not public, and
    connects to the first one checked (TLS still names the host for SNI and certificates)."""

    def _new_conn(self):  # noqa: ANN202 - urllib3's signature
        host = self._dns_host
        try:
            addresses = resolve_host(host, self.port)
        except OSError as err:
            raise NameResolutionError(self.host, self, err) from err  # type: ignore[arg-type]
        if not addresses or any(refused_address(a) for a in addresses):
            raise PrivateAddressRefused(self, f"{self.host} resolves to a non-public address")
        self._dns_host = str(addresses[0])
        try:
            return super()._new_conn()
        finally:
            self._dns_host = host


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """A requests adapter whose direct connections reach public addresses only (through an
    environment proxy, the proxy connects: the check before the request still applies)."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedHTTPPool,
                                                   "https": _PinnedHTTPSPool}


def post(url: str, body: bytes, headers: dict[str, str], allow_private: bool):  # noqa: ANN201
    """One delivery POST: no redirect followed, public addresses only unless allowed."""
    with requests.Session() as session:
        if not allow_private:
            adapter = PublicOnlyAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session.post(url, data=body, timeout=TIMEOUT_S, allow_redirects=False,
                            headers=headers)


def deliver_due(rt: Runtime) -> int:
    """Deliver the notifications that are due; returns how many were attempted. What the
    cycle cannot start within CYCLE_LEASE_MS of its claim is handed back, due at once."""
    until = time.monotonic() + CYCLE_LEASE_MS / 1000  # read before the claim: errs on the safe side
    ids = rt.store.claim_due(rt.keys.notify, BATCH, CYCLE_LEASE_MS + longest_delivery_ms())
    for index, job_id in enumerate(ids):
        if time.monotonic() >= until:  # a delivery started now could outlive the lease
            rt.store.hand_back(rt.keys.notify, ids[index:])
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
            resp = post(url, body, {"Content-Type": "application/json",
                                    "X-Backbeat-Signature": sign_webhook(
                                        rt.secret, body, int(time.time()))},
                        rt.settings.webhook_allow_private)
            error = None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            error = PRIVATE if _refused_at_connect(exc) else f"{type(exc).__name__}"
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
    delay_s = BACKOFF.delay_s(attempts)
    rt.store.reschedule(rt.keys.notify, job_id, int(delay_s * 1000))
    return False


def _refused_at_connect(exc: BaseException) -> bool:
    """Whether a requests error comes from PrivateAddressRefused (wrapped by urllib3)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, PrivateAddressRefused):
            return True
        reason = getattr(seen, "reason", None)
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = reason if isinstance(reason, BaseException) else (nested or seen.__cause__)
    return False
