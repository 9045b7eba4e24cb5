"""Process logging from Settings: one line per record, ``text`` or ``json``, secrets redacted.

:func:`configure_logging` is the one entry point. The worker and beat call it from Celery's
``setup_logging`` signal (workers/app.py), so Celery leaves the loggers alone and its own lines
reach the root handler in the same format; ``web`` calls it in ``create_app()`` (api/web.py;
an app built for settings passed in leaves the process's logging to its caller).
The CLI does not: it prints to the terminal.

- ``BACKBEAT_LOG_LEVEL``: the root level.
- ``BACKBEAT_LOG_FORMAT=json``: one JSON object per line: ``ts`` (ISO-8601 UTC), ``level``,
  ``logger``, ``msg``, then the record's structured fields (``extra=``: ``job``, ``account``,
  ``from``, ``to``, ``reason``, ``outcome``, ...) and ``exc`` (the traceback, one string).
- ``text``: ``<ts> <LEVEL> [<process>] <logger>: <msg>``, tracebacks below.

Secrets: :class:`~backbeat.config.settings.Secret` never prints itself. On top of that the
handler carries :class:`RedactSecrets`, which replaces every configured secret value (the API
key, ``BACKBEAT_SECRET``, the producer tokens, the provider webhook key) and the credential of
any ``Authorization`` header with ``***``, in the message, its arguments, structured fields and
tracebacks; the formatters redact the finished line once more. A library that logs a header
cannot leak a key.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from .settings import Settings, get_settings

#: what replaces a secret
MASK = "***"
#: the credential of an Authorization header (``Authorization: Bearer x``, ``'Authorization':
#: 'Bearer x'``, ``authorization=x``), whoever's it is
_AUTH_HEADER = re.compile(
    r"""(authorization['"]?\s*[:=]\s*['"]?(?:(?:bearer|basic|token)\s+)?)[^\s'",;}\\]+""",
    re.IGNORECASE)
#: the attributes every LogRecord has: anything else on a record came in through ``extra=``
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
#: loggers that do not propagate to the root and get the root's handler (billiard's pool
#: logger: Celery gives it ERROR unless MP_LOG, and so do we)
_OWN_HANDLER = {"multiprocessing": logging.ERROR}
#: loggers with handlers of their own, kept but given our formatter and filter (gunicorn's,
#: when ``web`` runs under gunicorn: its worker's lines and the access log)
_ADOPT = ("gunicorn.error", "gunicorn.access")
#: marks the handler configure_logging installed, so a second call replaces it
_MARK = "_backbeat_handler"
_TRACEBACKS = logging.Formatter()


def secret_values(settings: Settings) -> list[str]:
    """The configured secrets' values: API keys (every account's), BACKBEAT_SECRET, tokens
    (a ``name:token`` entry's token part too), webhook key."""
    from .producers import token_producers

    secrets = [settings.api_key, settings.secret, *settings.api_tokens,
               *(token for _, token in token_producers(settings.api_tokens)),
               *(account.api_key for account in settings.accounts),
               *(account.webhook_key for account in settings.accounts),
               settings.provider_webhook_key]
    return [s.reveal() for s in secrets if s]


class RedactSecrets(logging.Filter):
    """Replace each secret value, and any Authorization header's credential, with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        values = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first
        self._values = re.compile("|".join(map(re.escape, values))) if values else None

    def redact(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(MASK, text)
        return _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record's message now and redact it, its traceback and its string fields
        (the record is shared by every handler: they all get the redacted one)."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - bad arguments: keep them visible, but redacted
            message = f"{record.msg!s} (arguments {record.args!r})"
        record.msg, record.args = self.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields: what ``extra=`` added to it."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not
            k.startswith("_")}


def utc_iso(created: float) -> str:
    """``2026-12-02T04:16:39.123Z``."""
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, redact: RedactSecrets) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {"ts": utc_iso(record.created), "level": record.levelname,
                                   "logger": record.name, "msg": record.getMessage()}
        for key, value in extra_fields(record).items():
            payload.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        line = json.dumps(self._scrub(payload), default=lambda o: self._redact.redact(str(o)),
                          separators=(",", ":"))
        return self._redact.redact(line)

    def _scrub(self, value: Any) -> Any:
        """Every string in ``value`` redacted before encoding (JSON escapes would hide one)."""
        if isinstance(value, str):
            return self._redact.redact(value)
        if isinstance(value, dict):
            return {str(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value


class TextFormatter(logging.Formatter):
    """``2026-12-02T04:16:39.123Z INFO [MainProcess] backbeat.workers.store: job ...``."""

    def __init__(self, redact: RedactSecrets) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s")
        self._redact = redact

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return utc_iso(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact.redact(super().format(record))


def configure_logging(settings: Settings | None = None, *,
                      stream: IO[str] | None = None) -> logging.Handler:
    """Configure this process's logging from ``settings`` (default: the environment): the root
    level, one handler (stderr, or ``stream``) with the format and the secret filter. Calling
    it again replaces the handler it installed; other handlers are left alone. Returns it."""
    settings = settings or get_settings()
    redact = RedactSecrets(secret_values(settings))
    formatter: logging.Formatter = (JsonFormatter(redact) if settings.log_format == "json"
                                    else TextFormatter(redact))
    handler = logging.StreamHandler(stream)  # None: sys.stderr
    handler.setFormatter(formatter)
    handler.addFilter(redact)
    setattr(handler, _MARK, True)

    root = logging.getLogger()
    _replace_handler(root, handler)
    root.setLevel(settings.log_level)
    for name, level in _OWN_HANDLER.items():
        logger = logging.getLogger(name)
        _replace_handler(logger, handler)
        logger.setLevel(level)
    for name in _ADOPT:
        for other in logging.getLogger(name).handlers:
            other.setFormatter(formatter)
            for old in [f for f in other.filters if isinstance(f, RedactSecrets)]:
                other.removeFilter(old)
            other.addFilter(redact)
    return handler


def _replace_handler(logger: logging.Logger, handler: logging.Handler) -> None:
    for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
