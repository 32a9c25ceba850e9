"""`device-agent status | update | logs`: small clients of the agent's local API, on the device.

They read the same config.json as the agent, for the port (`listenPort`) and the data dir,
where the device API key is kept — so they need the same rights as the agent (root).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from agent.api.keys import STORE_KEY
from agent.config import load_device_config
from agent.errors import AgentError
from agent.store import Store


class ApiUnreachable(AgentError):
    """The agent's local API did not answer."""


class LocalApi:
    def __init__(self, config_path: Path, timeout: float = 10.0) -> None:
        config = load_device_config(config_path)
        self.url = config.local_api_url
        keys = Store(config.data_dir).get(STORE_KEY, {}) or {}
        self._key = keys.get("global")
        self._timeout = timeout

    def open(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self._key:
            request.add_header("Authorization", f"Bearer {self._key}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            return opener.open(request, timeout=timeout or self._timeout)
        except urllib.error.HTTPError as exc:
            return exc
        except OSError as exc:
            raise ApiUnreachable(
                f"cannot reach the agent's API at {self.url} ({exc}); is the agent running?"
            ) from exc

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        with self.open(method, path, body) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{_age(seconds)} ago"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render_status(data: dict[str, Any]) -> str:
    """The human view of GET /v2/agent/status."""
    dev = data["device"]
    conn = dev.get("connectivity") or {}
    shown = f"{conn['status']} ({conn['legacy_status']}), " if conn else ""
    lines = [
        f"device {dev['uuid']} ({dev['name'] or 'unnamed'}): {shown}{dev['status']}"
        + ("  [local mode]" if dev["localMode"] else ""),
        f"  heartbeat: last poll {_ago(dev['heartbeat']['ageSeconds'])}"
        + (f" (error: {dev['heartbeat']['error']})" if dev["heartbeat"]["error"] else ""),
        f"  last report: {_ago(dev['report']['ageSeconds'])}"
        + (f" (error: {dev['report']['error']})" if dev["report"]["error"] else ""),
        "  tunnel: "
        + ("enabled" if dev["tunnel"]["enabled"] else "disabled")
        + (", connected" if dev["tunnel"]["connected"] else ", not connected")
        + (f" ({conn['cloudlink']['detail']})" if conn.get("cloudlink", {}).get("detail") else ""),
    ]
    if conn:
        lines.insert(1, f"  why: {conn['reason']}")
    if dev["targetError"]:
        lines.append(f"  target error: {dev['targetError']}")
    lines += [f"  config error: {e}" for e in dev["configErrors"]]
    window = dev.get("updateWindow") or {}
    if window.get("setting"):
        state = window["reason"] if window["holding"] else "open"
        lines.append(f"  update window: {window['setting']} ({state})")
    if not data["apps"]:
        lines.append("no apps")
    for app in data["apps"]:
        status = app["updateStatus"] or "pending"
        lines.append(
            f"app {app['name']} (id {app['appId']}): release {app['release'] or '-'}, "
            f"{status} for {_age(app['sinceSeconds'])}"
            + (
                f" (running {app['currentRelease']})"
                if app["currentRelease"] not in (None, app["release"])
                else ""
            )
        )
        if app["reason"]:
            lines.append(f"  reason: {app['reason']}")
        width = max((len(s["name"]) for s in app["services"]), default=0)
        for svc in app["services"]:
            progress = svc["downloadProgress"]
            shown = (
                f" {progress}%" if svc["status"] == "Downloading" and progress is not None else ""
            )
            lines.append(f"  {svc['name']:<{width}}  {svc['status']}{shown}  {svc['image']}")
    return "\n".join(lines)


def status(api: LocalApi, as_json: bool, out: IO[str] = sys.stdout) -> int:
    code, data = api.json("GET", "/v2/agent/status")
    if code != 200:
        print(f"device-agent: status failed: HTTP {code} {data}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if as_json else render_status(data), file=out)
    return 0


def update(api: LocalApi, force: bool, out: IO[str] = sys.stdout) -> int:
    code, data = api.json("POST", "/v1/update", {"force": force})
    if code == 204:
        print("update requested: the agent polls the cloud and applies now", file=out)
        return 0
    if code == 202:
        print("update ignored: instant updates are off (use --force)", file=out)
        return 1
    print(f"device-agent: update failed: HTTP {code} {data}", file=sys.stderr)
    return 1


def logs(api: LocalApi, service: str | None, out: IO[str] = sys.stdout) -> int:
    path = "/v2/local/logs" + (f"?serviceName={service}" if service else "")
    response = api.open("GET", path, timeout=3600 * 24)
    if response.status != 200:
        print(f"device-agent: logs failed: HTTP {response.status}", file=sys.stderr)
        return 1
    try:
        with response:
            for raw in response:
                line = json.loads(raw)
                when = time.strftime("%H:%M:%S", time.localtime(line.get("timestamp", 0) / 1000))
                who = "agent" if line.get("isSystem") else line.get("serviceName", "?")
                if "timestamp" not in line:
                    when = " " * 8
                print(f"{when} [{who}] {line.get('message', '')}", file=out, flush=True)
    except KeyboardInterrupt:
        return 0
    return 0
