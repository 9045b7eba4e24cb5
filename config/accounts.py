"""Provider accounts: ``BACKBEAT_ACCOUNTS`` (or ``BACKBEAT_ACCOUNTS_FILE``), else one account
made of the single-account variables (``BACKBEAT_API_KEY`` and its neighbours).

Each entry is a JSON object::

    {"name": "main", "api_key": "…", "provider": "kie", "base_url": "https://…",
     "submit_rate": "20/10s", "submit_burst": 1, "poll_rate": "5/1s", "weight": 1,
     "credit_floor": 0, "credit_cost": 10, "webhook_key": "…"}

Only ``name`` and ``api_key`` are required; every other field falls back to the variable of
the same meaning (``BACKBEAT_PROVIDER``, ``BACKBEAT_API_BASE_URL`` — or the entry's provider's
official URL when the entry names another provider —, ``BACKBEAT_SUBMIT_RATE``, …). A bad entry
fails at start with the field named (``BACKBEAT_ACCOUNTS[1].submit_rate: …``); a key is never
part of a message. ``credit_cost`` (no variable of its own) is what one accepted submission
costs; without it the cost is learned from the balance reads (workers/lua/store_credits.lua).
``webhook_key`` is a kie account's ``webhookHmacKey`` (default: BACKBEAT_PROVIDER_WEBHOOK_KEY
for a kie account, none for a sunoapi one, which does not sign its callbacks).
``weight`` 0 drains an account: it takes no new submission, but its jobs are still polled
through it (docs/OPERATIONS.md, "Accounts").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..provider.profiles import ProviderProfile, get_profile
from .entries import NAME, NAME_RULE, check_object, load, number
from .values import RateSpec, Secret

#: the one account's name when only BACKBEAT_API_KEY is set
DEFAULT_NAME = "default"
FIELDS = ("name", "api_key", "provider", "base_url", "submit_rate", "submit_burst",
          "poll_rate", "weight", "credit_floor", "credit_cost", "webhook_key")


@dataclass(frozen=True)
class AccountSpec:
    """One provider account as configured (the key wrapped: it never prints)."""

    name: str
    api_key: Secret
    provider: ProviderProfile
    base_url: str
    submit_rate: RateSpec
    submit_burst: int
    poll_rate: RateSpec
    weight: float = 1.0
    credit_floor: float = 0.0
    #: credits one accepted submission costs; None: learned from balance reads
    credit_cost: float | None = None
    #: kie's webhookHmacKey of this account: its callbacks must carry a valid
    #: X-Webhook-Signature (empty: not checked)
    webhook_key: Secret = Secret("")


def single(values: Mapping[str, Any]) -> AccountSpec:
    """The one account of the single-account variables (``values``: Settings fields)."""
    return AccountSpec(
        name=DEFAULT_NAME, api_key=values["api_key"], provider=values["provider"],
        base_url=values["api_base_url"], submit_rate=values["submit_rate"],
        submit_burst=values["submit_burst"], poll_rate=values["poll_rate"],
        weight=1.0, credit_floor=values["credit_floor"],
        webhook_key=values["provider_webhook_key"])


def parse_accounts(text: str, source: str, values: Mapping[str, Any]) -> tuple[AccountSpec, ...]:
    """The accounts of the JSON ``text`` read from ``source`` (the variable's name, for
    messages); ``values``: the Settings fields read so far (each omitted field's fallback)."""
    entries = load(text, source)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: must be a non-empty JSON list of accounts")
    out: list[AccountSpec] = []
    names: set[str] = set()
    keys: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source}[{index}]"
        entry = check_object(entry, where, FIELDS)
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"{where}.name: required, {NAME_RULE}")
        if name in names:
            raise ValueError(f"{where}.name: {name!r} is named twice")
        key = entry.get("api_key")
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{where}.api_key: required, a non-empty string")
        if key in keys:
            raise ValueError(f"{where}.api_key: the same key as an earlier account (one "
                             "account, one entry)")
        names.add(name)
        keys.add(key)
        provider = values["provider"]
        if "provider" in entry:
            try:
                provider = get_profile(str(entry["provider"]))
            except ValueError as exc:
                raise ValueError(f"{where}.provider: {exc}") from None
        base_url = values["api_base_url"] if provider is values["provider"] \
            else provider.base_url.rstrip("/")
        if "base_url" in entry:
            base_url = entry["base_url"]
            if not isinstance(base_url, str) or not re.match(r"^https?://[^\s/]+", base_url):
                raise ValueError(f"{where}.base_url: must be an http(s) URL")
            base_url = base_url.rstrip("/")
        rates = {}
        for field in ("submit_rate", "poll_rate"):
            rates[field] = values[field]
            if field in entry:
                try:
                    rates[field] = RateSpec.parse(str(entry[field]))
                except ValueError as exc:
                    raise ValueError(f"{where}.{field}: {exc}") from None
        webhook_key = values["provider_webhook_key"] if provider.name == "kie" else Secret("")
        if "webhook_key" in entry:
            if not isinstance(entry["webhook_key"], str):
                raise ValueError(f"{where}.webhook_key: must be a string")
            webhook_key = Secret(entry["webhook_key"])
        out.append(AccountSpec(
            name=name, api_key=Secret(key), provider=provider, base_url=base_url,
            webhook_key=webhook_key,
            submit_rate=rates["submit_rate"], poll_rate=rates["poll_rate"],
            submit_burst=number(entry, "submit_burst", where, values["submit_burst"],
                                integer=True, minimum=1),
            weight=number(entry, "weight", where, 1.0),
            credit_floor=number(entry, "credit_floor", where, values["credit_floor"]),
            credit_cost=number(entry, "credit_cost", where, None)))
    if not any(a.weight > 0 for a in out):
        raise ValueError(f"{source}: every account has weight 0: none may submit")
    return tuple(out)


def read_accounts(environ: Mapping[str, str], values: Mapping[str, Any]
                  ) -> tuple[AccountSpec, ...]:
    """``BACKBEAT_ACCOUNTS``, else ``BACKBEAT_ACCOUNTS_FILE``, else () (the single account)."""
    text = environ.get("BACKBEAT_ACCOUNTS", "").strip()
    if text:
        return parse_accounts(text, "BACKBEAT_ACCOUNTS", values)
    path = environ.get("BACKBEAT_ACCOUNTS_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ValueError(f"BACKBEAT_ACCOUNTS_FILE: cannot read {path!r} "
                             f"({exc.strerror})") from None
        return parse_accounts(text, "BACKBEAT_ACCOUNTS_FILE", values)
    return ()
