"""Authentication for the local API: `?apikey=KEY` or `Authorization: Bearer KEY` (also
`ApiKey KEY`, as the reference accepts), then the route's rule from the access table
(agent/api/access.py). In local mode everything is open, as with the reference."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.api.access import Access, access_of
from agent.api.common import SCOPE_KEY, ApiError, app_id_of, read_body
from agent.api.keys import GLOBAL, ApiKeys, Scope

_HEADER_RE = re.compile(r"^(?:Bearer|ApiKey)\s+(\S+)\s*$", re.IGNORECASE)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def key_of(request: web.Request) -> str | None:
    key = request.query.get("apikey")
    if key:
        return key
    match = _HEADER_RE.match(request.headers.get("Authorization", ""))
    return match.group(1) if match else None


async def check_access(
    request: web.Request, access: Access | None, scope: Scope, strict: bool = False
) -> None:
    """The table's rule for a known key: 403 for an app key on this agent's own device routes
    (and, with `strict`, on balena's device routes too), 401 for an app key on another app's
    route (400 when that app id is malformed or missing)."""
    if scope.is_global or access in (None, Access.OPEN, Access.ANY_KEY):
        return
    if access is Access.DEVICE and not strict:
        return
    if access in (Access.DEVICE, Access.AGENT_DEVICE):
        why = " (strictApiKeys is on)" if access is Access.DEVICE else ""
        raise ApiError(403, f"Forbidden: device-wide actions need the device API key{why}")
    if access is Access.APP_PATH:
        app_id = app_id_of(request.match_info.get("appId"))
    else:
        app_id = app_id_of((await read_body(request)).get("appId"))
    if not scope.allows(app_id):
        raise ApiError(401, "Unauthorized: this API key is scoped to another app")


def auth_middleware(
    keys: ApiKeys, local_mode: Callable[[], bool], strict: bool = False
) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        access = access_of(request)
        if access is Access.OPEN or local_mode():
            request[SCOPE_KEY] = GLOBAL
            return await handler(request)
        key = key_of(request)
        scope = keys.lookup(key) if key else None
        if scope is None:
            message = "Unauthorized: invalid API key" if key else "Unauthorized: API key required"
            raise ApiError(401, message)
        await check_access(request, access, scope, strict)
        request[SCOPE_KEY] = scope
        return await handler(request)

    return authenticate
