"""The Devices page (`GET /` and `/devices`): one row per device with its status (current name,
the older one in small text), the heartbeat and cloudlink indicators, the update status and its
duration (since the latest update status change, as the product page describes), the release
running and any other release reported with the agent's reason (waiting for the update window,
rolled back), and the last poll, and below the table each device's latest log lines. Plain
HTML refreshing itself every 2 s; every value is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from aiohttp import web

from devcloud.connectivity import CONNECTIVITY_KEY, DeviceConnectivity, iso
from devcloud.logs import LOGS_KEY, PANEL_STYLE, LogStore, render_panel, service_names
from devcloud.state import Device

REFRESH_S = 2

_STATUS_CLASS = {
    "Operational": "ok",
    "Reduced Functionality": "warn",
    "Disconnected": "bad",
    "Updating": "busy",
    "Configuring": "busy",
    "Inactive": "idle",
    "Post Provisioning": "idle",
}

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.meta { color: #667; margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #e3e6ea;
         vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #667; }
code { font-size: 13px; }
small { color: #667; display: block; }
.status { font-weight: 600; }
.status.ok { color: #1a7f37; } .status.warn { color: #b26b00; } .status.bad { color: #c62828; }
.status.busy { color: #1f5fbf; } .status.idle { color: #667; }
.dot { display: inline-block; width: 12px; height: 12px; border-radius: 50%; }
.dot.on { background: #2ea44f; } .dot.off { background: #d73a49; } .dot.na { background: #c8ccd1; }
.empty { color: #667; padding: 24px 10px; }
.why { color: #b26b00; max-width: 28em; }
"""

_COLUMNS = (
    "Name",
    "UUID",
    "Status",
    "Heartbeat",
    "Cloudlink",
    "Update status",
    "Update status duration",
    "Release",
    "Waiting",
    "Last poll",
)


def humanize(seconds: float) -> str:
    """A duration in the largest whole unit: "17 minutes", "1 hour", "5 seconds"."""
    whole = int(max(0.0, seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if whole >= size:
            n = whole // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{whole} second{'' if whole == 1 else 's'}"


def _dot(name: str, state: str, title: str) -> str:
    label = f"{name}: {title}"
    return (
        f'<span class="dot {state}" data-{name.lower()}="{state}" role="img" '
        f'title="{escape(label)}" aria-label="{escape(label)}"></span>'
    )


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    return f'<span title="{escape(iso(t) or "")}">{escape(humanize(now - t))} ago</span>'


def _releases(device: Device) -> tuple[str, str]:
    """From the device's report, per app: the release running, and every other release it
    reports (waiting, failed, rolled back) with its update status and the agent's reason
    (`update_reason`, e.g. "waiting for the update window (next: Tue 02:00)")."""
    running: list[str] = []
    others: list[str] = []
    apps = device.current.get("apps")
    for app_uuid, app in sorted(apps.items() if isinstance(apps, dict) else []):
        if not isinstance(app, dict):
            continue
        current = app.get("release_uuid")
        if isinstance(current, str) and current:
            running.append(f'<code data-running="{escape(app_uuid)}">{escape(current[:7])}</code>')
        releases = app.get("releases")
        for release, entry in sorted(releases.items() if isinstance(releases, dict) else []):
            if release == current or not isinstance(entry, dict):
                continue
            status = escape(str(entry.get("update_status") or "pending"))
            reason = entry.get("update_reason")
            why = f'<small class="why">{escape(str(reason))}</small>' if reason else ""
            others.append(
                f'<div data-waiting="{escape(app_uuid)}"><code title="{escape(release)}">'
                f"{escape(release[:7])}</code> {status}{why}</div>"
            )
    return "<br>".join(running) or "—", "".join(others) or "—"


def _row(device: Device, conn: DeviceConnectivity, now: float) -> str:
    view = conn.view
    status = str(view.status)
    heartbeat_title = (
        f"last poll {humanize(now - conn.heartbeat_last)} ago"
        if conn.heartbeat_last is not None
        else "no successful poll yet"
    )
    link = conn.cloudlink
    if not link.enabled:
        cloudlink = _dot("Cloudlink", "na", "disabled")
    else:
        title = f"{link.kind} connected" if link.ok else f"{link.kind} down: {link.detail}"
        cloudlink = _dot("Cloudlink", "on" if link.ok else "off", title)
    update = (conn.update_status or "").capitalize() or "—"
    duration = "—" if conn.update_since is None else humanize(now - conn.update_since)
    running, waiting = _releases(device)
    cells = [
        escape(device.name),
        f'<code title="{escape(device.uuid)}">{escape(device.uuid[:7])}</code>',
        f'<span class="status {_STATUS_CLASS.get(status, "idle")}" title="{escape(view.reason)}">'
        f"{escape(status)}</span><small>{escape(str(view.legacy))}</small>",
        _dot("Heartbeat", "on" if conn.heartbeat_ok else "off", heartbeat_title),
        cloudlink,
        escape(update),
        escape(duration),
        running,
        waiting,
        _ago(device.last_poll, now),
    ]
    tds = "".join(f"<td>{cell}</td>" for cell in cells)
    return (
        f'<tr class="device" id="device-{escape(device.uuid)}" data-uuid="{escape(device.uuid)}" '
        f'data-status="{escape(status)}">{tds}</tr>'
    )


def render_devices(
    rows: list[tuple[Device, DeviceConnectivity]], now: float, logs: LogStore | None = None
) -> str:
    """The whole page for these devices, as of `now`; below the table each device's latest
    log lines (devcloud/logs.py)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in _COLUMNS)
    body = "".join(_row(d, c, now) for d, c in rows) or (
        f'<tr><td class="empty" colspan="{len(_COLUMNS)}">No devices yet.</td></tr>'
    )
    stamp = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S UTC")
    count = f"{len(rows)} device{'' if len(rows) == 1 else 's'}"
    panels = "".join(
        render_panel(d.name, d.uuid, logs.devices[d.uuid], service_names(d.target))
        for d, _ in rows
        if logs is not None and d.uuid in logs.devices
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        "<title>Devices · devcloud</title>"
        f"<style>{_STYLE}{PANEL_STYLE}</style></head>\n"
        f'<body><h1>Devices</h1><p class="meta">{count} · as of {stamp}</p>\n'
        f"<table><thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody></table>\n{panels}"
        "</body></html>\n"
    )


async def devices_page(request: web.Request) -> web.Response:
    connectivity = request.app[CONNECTIVITY_KEY]
    now = connectivity.clock()
    devices = sorted(connectivity.cloud.devices.values(), key=lambda d: (d.name, d.uuid))
    rows = [(d, connectivity.of(d, now)) for d in devices]
    return web.Response(
        text=render_devices(rows, now, request.app.get(LOGS_KEY)),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", devices_page)
    app.router.add_get("/devices", devices_page)
