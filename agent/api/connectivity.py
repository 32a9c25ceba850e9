"""The device status the dashboard shows, as the agent sees it: `GET /v2/device/status` (ours,
global key) and the tunnel half of `GET /v2/device/vpn`. Both read the connectivity monitor's
latest view — the same one the CLI, the metrics and the log use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from agent.api.common import success
from agent.api.ports import CONTEXT
from agent.connectivity.monitor import ConnectivityView


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="seconds")


def device_status_body(view: ConnectivityView) -> dict[str, Any]:
    return {
        "status": view.view.status.value,
        "legacy_status": view.view.legacy.value,
        "heartbeat": {
            "ok": view.heartbeat_ok,
            "last": iso(view.heartbeat_last),
            "detail": view.heartbeat_detail,
        },
        "cloudlink": {
            "ok": view.cloudlink.ok,
            "enabled": view.cloudlink.enabled,
            "kind": view.cloudlink.kind,
            "last_handshake": iso(view.cloudlink.last_handshake),
            "detail": view.cloudlink.detail,
        },
        "reason": view.view.reason,
    }


async def current_view(request: web.Request) -> ConnectivityView:
    monitor = request.app[CONTEXT].connectivity
    return monitor.view if monitor.view is not None else await monitor.probe_once()


async def device_status(request: web.Request) -> web.Response:
    return success(device=device_status_body(await current_view(request)))


async def tunnel_state(request: web.Request) -> dict[str, bool]:
    view = await current_view(request)
    return {"enabled": view.cloudlink.enabled, "connected": view.cloudlink.ok}
