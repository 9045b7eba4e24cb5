"""Lua scripts shipped as package data, read once and registered per Redis client.

A script may say ``--#include <name>`` on a line of its own: ``states`` puts the state machine's
tables there (generated from workers/states.py, the one definition), any other name the text of
``lua/_<name>.lua`` (a helper function more than one script uses).
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from redis import Redis
from redis.commands.core import Script

from .states import lua_tables

_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)
#: every script the workers load (``make setup`` checks each is in the installed package)
NAMES = ("acquire", "fence", "report", "transition", "create_job", "annotate", "claim_due",
         "lease", "reclaim", "rescue_stranded", "add_duplicate", "store_credits", "admit",
         "dispatch", "quota", "budget", "unlane", "settle")


@cache
def source(name: str) -> str:
    """The text of ``workers/lua/<name>.lua`` from the installed package, includes written in."""
    return _INCLUDE.sub(lambda m: _included(m.group(1)), _read(name))


def _included(name: str) -> str:
    return lua_tables() if name == "states" else _read(f"_{name}").rstrip("\n")


def _read(name: str) -> str:
    return files("backbeat.workers").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def register(client: Redis, name: str) -> Script:
    """A callable script bound to ``client`` (EVALSHA, falling back to EVAL once)."""
    return client.register_script(source(name))
