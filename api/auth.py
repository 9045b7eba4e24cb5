"""Bearer-token check for producer-facing routes; the token names the producer."""

from __future__ import annotations

import hmac

from flask import request
from flask_smorest import abort

from ..config.producers import DEFAULT, token_producers
from ..workers.runtime import Runtime


def require_token(rt: Runtime) -> str:
    """The producer of the request's bearer token (``name:token`` entries of
    BACKBEAT_API_TOKENS; a bare token is ``default``); 401 without a valid one. While the API
    is open (dev, no tokens) every request is producer ``default``."""
    tokens = rt.settings.api_tokens
    if not tokens:
        if rt.settings.is_prod:
            abort(401, message="the API is closed: set BACKBEAT_API_TOKENS")
        return DEFAULT
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    producer = None
    for name, token in token_producers(tokens):  # every token compared: constant work
        if given and hmac.compare_digest(given.encode(), token.reveal().encode()):
            producer = producer or name
    if producer is None:
        abort(401, message="missing or invalid bearer token")
    return producer
