"""Authentication for the local API: `?apikey=KEY` or `Authorization: Bearer KEY` (also
`ApiKey KEY`, as the reference accepts). Only `/ping` and `/v1/healthy` are open; in local mode
everything is open, as with the reference."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.api.common import SCOPE_KEY, ApiError
from agent.api.keys import GLOBAL, ApiKeys

OPEN_PATHS = frozenset({"/ping", "/v1/healthy"})
_HEADER_RE = re.compile(r"^(?:Bearer|ApiKey)\s+(\S+)\s*$", re.IGNORECASE)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def key_of(request: web.Request) -> str | None:
    key = request.query.get("apikey")
    if key:
        return key
    match = _HEADER_RE.match(request.headers.get("Authorization", ""))
    return match.group(1) if match else None


def auth_middleware(keys: ApiKeys, local_mode: Callable[[], bool]) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or local_mode():
            request[SCOPE_KEY] = GLOBAL
            return await handler(request)
        key = key_of(request)
        scope = keys.lookup(key) if key else None
        if scope is None:
            message = "Unauthorized: invalid API key" if key else "Unauthorized: API key required"
            raise ApiError(401, message)
        request[SCOPE_KEY] = scope
        return await handler(request)

    return authenticate
