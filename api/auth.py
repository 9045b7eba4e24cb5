"""Bearer-token check for producer-facing routes."""

from __future__ import annotations

import hmac

from flask import request
from flask_smorest import abort

from ..workers.runtime import Runtime


def require_token(rt: Runtime) -> None:
    tokens = rt.settings.api_tokens
    if not tokens:
        if rt.settings.is_prod:
            abort(401, message="the API is closed: set BACKBEAT_API_TOKENS")
        return
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not given or not any(hmac.compare_digest(given.encode(), t.reveal().encode())
                            for t in tokens):
        abort(401, message="missing or invalid bearer token")
