"""Redis URLs backbeat accepts, Sentinel included (docs/OPERATIONS.md, "Redis high availability").

A plain ``redis://`` / ``rediss://`` / ``unix://`` URL names one server. A Sentinel URL names
the sentinels that watch a primary; every client asks them where the primary is and follows a
failover by asking again. Two spellings are accepted, in ``BACKBEAT_REDIS_URL`` and
``BACKBEAT_BROKER_URL`` alike::

    redis+sentinel://[[user]:password@]host:port[,host2:port2,...][/db][?master_name=mymaster]
    sentinel://[[user]:password@]host:port[;sentinel://host2:port2...][/db][?master_name=...]

The second is kombu's own form (one ``sentinel://`` URL per sentinel, separated by ``;``); the
db, the query and the credentials may stand on any one of its parts. Query parameters:

``master_name``        the name the sentinels monitor (``sentinel monitor <name> ...``);
                       default ``mymaster``
``sentinel_password``  the password of the sentinels themselves (``requirepass`` in
                       sentinel.conf), when they have one

The credentials in the URL are those of the Redis primary (and its replicas), never sent to the
sentinels. A port left out is 26379, the sentinel default. Example:
``redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/0?master_name=backbeat``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

#: URL schemes that name sentinels rather than a Redis server
SENTINEL_SCHEMES = ("redis+sentinel", "sentinel")
DEFAULT_MASTER_NAME = "mymaster"
DEFAULT_SENTINEL_PORT = 26379
_QUERY_KEYS = ("master_name", "sentinel_password")


@dataclass(frozen=True)
class SentinelURL:
    """A parsed Sentinel URL: where the sentinels are and what to ask them for."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str = DEFAULT_MASTER_NAME
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def __repr__(self) -> str:  # credentials never print
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"SentinelURL({hosts}/{self.db}?master_name={self.master_name})"

    def kombu_url(self) -> str:
        """The broker URL in kombu's form: one ``sentinel://`` URL per sentinel joined by
        ``;``, each carrying the credentials and the db (kombu reads them from whichever
        sentinel it is connected through)."""
        auth = ""
        if self.username or self.password:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        return ";".join(f"sentinel://{auth}{_netloc(h)}:{p}/{self.db}" for h, p in self.sentinels)

    def kombu_transport_options(self) -> dict[str, object]:
        """What kombu's Sentinel transport reads besides the URL (``master_name``, and the
        sentinels' own password with the same socket settings kombu would use)."""
        options: dict[str, object] = {"master_name": self.master_name}
        if self.sentinel_password:
            options["sentinel_kwargs"] = {"password": self.sentinel_password,
                                          "socket_connect_timeout": 5, "socket_timeout": 5,
                                          "socket_keepalive": True}
        return options


def is_sentinel(url: str) -> bool:
    """True when ``url`` names sentinels (``redis+sentinel://`` or ``sentinel://``)."""
    scheme, sep, _ = url.strip().partition("://")
    return bool(sep) and scheme.lower() in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelURL:
    """Parse either Sentinel spelling; ValueError (without the password) when malformed."""
    parts = [p.strip() for p in url.strip().split(";") if p.strip()]
    if not parts:
        raise ValueError("empty Sentinel URL")
    sentinels: list[tuple[str, int]] = []
    found: dict[str, str] = {}
    for part in parts:
        scheme, sep, rest = part.partition("://")
        if not sep or scheme.lower() not in SENTINEL_SCHEMES:
            raise ValueError(f"{redact(part)!r}: each part of a Sentinel URL must start with "
                             "redis+sentinel:// or sentinel://")
        rest, _, query = rest.partition("?")
        netloc, slash, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        if not at:
            hosts = netloc
        if at:
            user, _, password = userinfo.partition(":")
            _merge(found, "username", unquote(user), url)
            _merge(found, "password", unquote(password), url)
        if slash and path.strip("/"):
            _merge(found, "db", path.strip("/"), url)
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key not in _QUERY_KEYS:
                raise ValueError(f"{redact(url)!r}: unknown parameter {key!r} "
                                 f"(known: {', '.join(_QUERY_KEYS)})")
            _merge(found, key, value, url)
        for host in hosts.split(","):
            if host.strip():
                sentinels.append(_host_port(host.strip(), url))
    if not sentinels:
        raise ValueError(f"{redact(url)!r}: no sentinel host")
    db = found.get("db", "0")
    if not db.isdigit():
        raise ValueError(f"{redact(url)!r}: the db must be a number, got {db!r}")
    master_name = found.get("master_name") or DEFAULT_MASTER_NAME
    return SentinelURL(
        sentinels=tuple(dict.fromkeys(sentinels)),
        master_name=master_name,
        db=int(db),
        username=found.get("username") or None,
        password=found.get("password") or None,
        sentinel_password=found.get("sentinel_password") or None,
    )


def broker_url_and_options(url: str) -> tuple[str, dict[str, object]]:
    """The URL to give Celery and the transport options to add to it: a Sentinel URL in either
    spelling becomes kombu's form plus ``master_name``; any other URL is left as it is."""
    if not is_sentinel(url):
        return url, {}
    parsed = parse_sentinel(url)
    return parsed.kombu_url(), parsed.kombu_transport_options()


def _merge(found: dict[str, str], key: str, value: str, url: str) -> None:
    if not value:
        return
    if found.get(key, value) != value:
        raise ValueError(f"{redact(url)!r}: {key} is given twice with different values")
    found[key] = value


def _host_port(text: str, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [ipv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"{redact(url)!r}: empty sentinel host in {text!r}")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{redact(url)!r}: bad sentinel port in {text!r}")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***`` (for error messages)."""
    url = re.sub(r"(://[^:@/;,]*:)[^@;]*@", r"\1***@", url)
    return re.sub(r"(sentinel_password=)[^&;]*", r"\1***", url)
