"""Which key may call which route: ONE table, checked by the auth middleware before any
handler runs. Handlers never check keys themselves; those marked ANY_KEY show only what the
key's scope reaches (an app key sees its own app).

- OPEN: no key (`/ping`, `/v1/healthy`).
- ANY_KEY: the device key or any app's key.
- DEVICE: what balena's docs show apps doing with the key they get through
  `io.balena.features.supervisor-api` (reboot, shut down, update, host-config): any key, as on
  balena; the device key only (an app key gets 403) with config.json `strictApiKeys: true`.
- AGENT_DEVICE: this agent's own device-wide routes (no such route on balena): the device key
  only, in both modes.
- APP_PATH / APP_BODY: an app's own routes; the app is the path's `{appId}` or the body's
  `appId`. An app key scoped to another app gets 401, as the reference answers.

In local mode every route is open, as with the reference.
"""

from __future__ import annotations

import enum

from aiohttp import web


class Access(enum.Enum):
    OPEN = "open"
    ANY_KEY = "any key"
    DEVICE = "device key when strict"
    AGENT_DEVICE = "device key"
    APP_PATH = "app in path"
    APP_BODY = "app in body"


_A = Access
ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/ping"): _A.OPEN,
    ("GET", "/v1/healthy"): _A.OPEN,
    ("POST", "/v1/update"): _A.DEVICE,
    ("POST", "/v1/reboot"): _A.DEVICE,
    ("POST", "/v1/shutdown"): _A.DEVICE,
    ("POST", "/v1/restart"): _A.APP_BODY,
    ("POST", "/v1/purge"): _A.APP_BODY,
    ("GET", "/v1/device/host-config"): _A.DEVICE,
    ("PATCH", "/v1/device/host-config"): _A.DEVICE,
    ("POST", "/v1/blink"): _A.ANY_KEY,
    ("POST", "/v1/regenerate-api-key"): _A.ANY_KEY,  # renews the caller's own key
    ("GET", "/v1/device"): _A.ANY_KEY,
    ("GET", "/v1/apps/{appId}"): _A.APP_PATH,
    ("POST", "/v1/apps/{appId}/stop"): _A.APP_PATH,
    ("POST", "/v1/apps/{appId}/start"): _A.APP_PATH,
    ("GET", "/v2/applications/state"): _A.ANY_KEY,
    ("GET", "/v2/applications/{appId}/state"): _A.APP_PATH,
    ("POST", "/v2/applications/{appId}/restart-service"): _A.APP_PATH,
    ("POST", "/v2/applications/{appId}/stop-service"): _A.APP_PATH,
    ("POST", "/v2/applications/{appId}/start-service"): _A.APP_PATH,
    ("POST", "/v2/applications/{appId}/restart"): _A.APP_PATH,
    ("POST", "/v2/applications/{appId}/purge"): _A.APP_PATH,
    ("GET", "/v2/state/status"): _A.ANY_KEY,
    ("GET", "/v2/containerId"): _A.ANY_KEY,
    ("GET", "/v2/version"): _A.ANY_KEY,
    ("GET", "/v2/device/name"): _A.ANY_KEY,
    ("GET", "/v2/device/vpn"): _A.ANY_KEY,
    ("GET", "/v2/device/status"): _A.AGENT_DEVICE,
    ("GET", "/v2/device/tags"): _A.ANY_KEY,
    ("PATCH", "/v2/device/tags"): _A.ANY_KEY,
    ("GET", "/v2/cleanup-volumes"): _A.ANY_KEY,  # removes only the caller's app's volumes
    ("GET", "/v2/agent/status"): _A.ANY_KEY,
    ("GET", "/v2/openapi.json"): _A.ANY_KEY,
    ("GET", "/v2/local/target-state"): _A.ANY_KEY,
    ("POST", "/v2/local/target-state"): _A.DEVICE,
    ("GET", "/v2/local/device-info"): _A.ANY_KEY,
    ("GET", "/v2/local/logs"): _A.ANY_KEY,  # only the caller's app's services
    ("POST", "/v2/journal-logs"): _A.ANY_KEY,
    ("GET", "/metrics"): _A.AGENT_DEVICE,
}


def registered(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves (HEAD counts as its GET)."""
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return found


def check_table(app: web.Application) -> None:
    """Every route has an entry and every entry a route: a route added without one would
    otherwise fall back to 'any key' unnoticed."""
    served = registered(app)
    missing, stale = served - ROUTES.keys(), ROUTES.keys() - served
    if missing or stale:
        raise RuntimeError(
            f"api access table: no entry for {sorted(missing)}, stale entries {sorted(stale)}"
        )


def access_of(request: web.Request) -> Access | None:
    """The rule of the route `request` matched; None for an unknown path or method (the
    router answers 404/405 after the key check, as today)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTES.get((method, resource.canonical))
