"""Device logs, received as balena's API receives them: `POST /device/v2/{uuid}/log-stream`
(Bearer device key), a gzip-encoded NDJSON body read as it streams in, each line stored the
moment it is decoded; the last `KEEP` lines per device are kept, as balena's cloud keeps the
latest 1,000.

Admin (tests, the Devices page):
  GET /admin/devices/{uuid}/logs          -> {lines: [...], received, requests, refused,
        raw_bytes, encodings}; each line as sent, plus `received_at` (unix s)
  PUT /admin/devices/{uuid}/logs/cut      {cut: true|false}: while cut, a new stream is
        refused (503) and an open one is answered 503 at its next piece, which is not stored
        (the cloud gone, as the device sees it)
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from html import escape
from typing import Any

from aiohttp import web

from devcloud.state import Cloud

KEEP = 1000


@dataclass
class DeviceLogs:
    lines: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEEP))
    received: int = 0
    requests: int = 0
    refused: int = 0
    raw_bytes: int = 0
    encodings: list[str] = field(default_factory=list)  # Content-Encoding of each request
    cut: bool = False


@dataclass
class LogStore:
    devices: dict[str, DeviceLogs] = field(default_factory=dict)

    def of(self, uuid: str) -> DeviceLogs:
        return self.devices.setdefault(uuid, DeviceLogs())


LOGS_KEY = web.AppKey("devcloud_logs", LogStore)
CLOUD_REF_KEY = web.AppKey("devcloud_logs_cloud", Cloud)


def _store_line(logs: DeviceLogs, raw: bytes) -> None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return
    if not isinstance(obj, dict):
        return
    obj["received_at"] = time.time()
    logs.lines.append(obj)
    logs.received += 1


async def log_stream(request: web.Request) -> web.StreamResponse:
    uuid = request.match_info["uuid"]
    device = request.app[CLOUD_REF_KEY].get(uuid)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if device is None or scheme.lower() != "bearer" or token.strip() != device.api_key:
        return web.Response(status=401, text="Unauthorized")
    logs = request.app[LOGS_KEY].of(uuid)
    logs.requests += 1
    if logs.cut:
        logs.refused += 1
        return web.Response(status=503, text="log stream unavailable")
    logs.encodings.append(request.headers.get("Content-Encoding", ""))
    # aiohttp inflates a gzip-encoded body itself (its payload parser), piece by piece
    pending = b""
    async for data in request.content.iter_any():
        if logs.cut:
            logs.refused += 1
            return web.Response(status=503, text="log stream unavailable")
        logs.raw_bytes += len(data)
        *complete, pending = (pending + data).split(b"\n")
        for raw in complete:
            if raw.strip():
                _store_line(logs, raw)
    if pending.strip():
        _store_line(logs, pending)
    return web.Response(status=201)


async def admin_logs(request: web.Request) -> web.Response:
    logs = request.app[LOGS_KEY].of(request.match_info["uuid"])
    return web.json_response(
        {
            "lines": list(logs.lines),
            "received": logs.received,
            "requests": logs.requests,
            "refused": logs.refused,
            "raw_bytes": logs.raw_bytes,
            "encodings": logs.encodings[-20:],
        }
    )


async def admin_cut(request: web.Request) -> web.Response:
    logs = request.app[LOGS_KEY].of(request.match_info["uuid"])
    try:
        body = json.loads(await request.read())
        logs.cut = bool(body["cut"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "body must be {cut: true|false}"}, status=400)
    return web.json_response({"cut": logs.cut})


def add_log_routes(app: web.Application, cloud: Cloud) -> None:
    app[LOGS_KEY] = LogStore()
    app[CLOUD_REF_KEY] = cloud
    app.router.add_post("/device/v2/{uuid}/log-stream", log_stream)
    app.router.add_get("/admin/devices/{uuid}/logs", admin_logs)
    app.router.add_put("/admin/devices/{uuid}/logs/cut", admin_cut)


# -- the Devices page's log panel ------------------------------------------------------------

PANEL_LINES = 50

PANEL_STYLE = """
section.logs { margin-top: 28px; }
section.logs h2 { font-size: 16px; margin: 0 0 6px; }
ol.loglines { list-style: none; margin: 0; padding: 8px 10px; background: #0f1720;
              color: #d8dee9; font: 12px/1.5 ui-monospace, monospace; border-radius: 6px; }
ol.loglines li { white-space: pre-wrap; word-break: break-all; }
ol.loglines time { color: #7b8794; margin-right: 8px; }
ol.loglines .svc { color: #8fbcbb; margin-right: 8px; }
ol.loglines li.system .svc { color: #ebcb8b; font-weight: 600; }
ol.loglines li.stderr .msg { color: #f28b82; }
"""


def service_names(target: dict[str, Any] | None) -> dict[int, str]:
    """serviceId -> service name, from the device's target ({name, config, apps})."""
    names: dict[int, str] = {}
    apps = (target or {}).get("apps") or {}
    for app in apps.values() if isinstance(apps, dict) else []:
        for release in (app.get("releases") or {}).values():
            for name, svc in (release.get("services") or {}).items():
                if isinstance(svc, dict) and isinstance(svc.get("id"), int):
                    names[svc["id"]] = str(name)
    return names


def render_panel(name: str, uuid: str, logs: DeviceLogs, names: dict[int, str]) -> str:
    """The device's latest lines, newest last: time, service (system lines marked), message."""
    items = []
    for line in list(logs.lines)[-PANEL_LINES:]:
        ts = line.get("timestamp")
        when = time.strftime("%H:%M:%S", time.gmtime(ts / 1000)) if isinstance(ts, int) else "?"
        system = bool(line.get("isSystem"))
        sid = line.get("serviceId")
        svc = "system" if system else names.get(sid, f"service {sid}") if sid else "?"
        classes = " ".join(
            c for c, on in (("system", system), ("stderr", line.get("isStdErr"))) if on
        )
        items.append(
            f'<li class="logline {classes}" data-system="{str(system).lower()}">'
            f'<time>{escape(when)}</time><span class="svc">{escape(svc)}</span>'
            f'<span class="msg">{escape(str(line.get("message", "")))}</span></li>'
        )
    body = "".join(items) or '<li class="empty">No log lines yet.</li>'
    return (
        f'<section class="logs" id="logs-{escape(uuid)}"><h2>Logs · {escape(name)} '
        f"<small>last {min(len(logs.lines), PANEL_LINES)} of {logs.received} lines</small></h2>"
        f'<ol class="loglines">{body}</ol></section>'
    )
