"""Lua scripts shipped as package data, read once and registered per Redis client."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from redis import Redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    """The text of ``workers/lua/<name>.lua`` from the installed package."""
    return files("backbeat.workers").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def register(client: Redis, name: str) -> Script:
    """A callable script bound to ``client`` (EVALSHA, falling back to EVAL once)."""
    return client.register_script(source(name))
