"""`device-agent diagnose`: check every link a device depends on and name the broken one.

Each check is independent and returns a `Check`; `verdict()` is a pure function of the checks
that ends the report with one line naming the broken link and its likely cause, e.g.
"heartbeat OK, cloudlink DOWN: no WireGuard handshake for 312 s — UDP to the endpoint blocked?".
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config import DeviceConfig
from agent.connectivity.api_reach import api_reachable
from agent.connectivity.cloudlink import BLOCKED_HINT, Cloudlink, VpnKind, vpn_config
from agent.engine.disk import engine_room
from agent.engine.docker import DockerEngine
from agent.errors import EngineError
from agent.locks import EntryKind, held_locks
from agent.store import Store

LOW_DISK_BYTES = 256 * 1024 * 1024
MAX_SKEW_S = 30.0


@dataclass(frozen=True)
class Check:
    name: str  # dns | tcp | tls | clock | engine | disk-data | disk-engine | cloudlink | locks
    ok: bool
    detail: str
    data: dict[str, Any] | None = None


async def check_dns(host: str) -> Check:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except socket.gaierror as exc:
        return Check("dns", False, f"cannot resolve {host}: {exc.strerror}")
    addresses = sorted({str(i[4][0]) for i in infos})
    return Check("dns", True, f"{host} → {', '.join(addresses)}", {"addresses": addresses})


async def check_reach(endpoint: str) -> Check:
    reach = await api_reachable(endpoint)
    name = "tls" if endpoint.startswith("https") else "tcp"
    return Check(name, reach.ok, reach.detail)


def _server_date(endpoint: str) -> float | None:
    request = urllib.request.Request(f"{endpoint}/ping", method="GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as resp:
            date = resp.headers.get("Date")
    except urllib.error.HTTPError as exc:  # an error page still carries a Date
        date = exc.headers.get("Date") if exc.headers else None
    except OSError:
        return None
    if not date:
        return None
    return email.utils.parsedate_to_datetime(date).timestamp()


async def check_clock(endpoint: str) -> Check:
    server = await asyncio.to_thread(_server_date, endpoint)
    if server is None:
        return Check("clock", True, "the API sent no Date header: skew unknown")
    skew = time.time() - server
    ok = abs(skew) <= MAX_SKEW_S
    return Check("clock", ok, f"local clock is {skew:+.0f} s off the API's", {"skew_s": skew})


async def check_engine(host: str) -> Check:
    engine = DockerEngine(host, timeout=10)
    try:
        version = await engine.version()
    except EngineError as exc:
        return Check("engine", False, str(exc))
    finally:
        engine.close()
    return Check(
        "engine",
        True,
        f"{host}: engine {version.get('Version')} (API {version.get('ApiVersion')})",
        {"version": version.get("Version")},
    )


async def check_disks(config: DeviceConfig) -> list[Check]:
    checks = []
    try:
        free = shutil.disk_usage(config.data_dir).free
        checks.append(
            Check(
                "disk-data",
                free > LOW_DISK_BYTES,
                f"{free // 2**20} MiB free for data in {config.data_dir}",
                {"free_bytes": free},
            )
        )
    except OSError as exc:
        checks.append(Check("disk-data", False, f"{config.data_dir}: {exc.strerror}"))
    engine = DockerEngine(config.docker_host, timeout=10)
    try:
        room = await engine_room(engine)
    finally:
        engine.close()
    if room is not None:
        checks.append(
            Check(
                "disk-engine",
                room.free > LOW_DISK_BYTES,
                f"{room.free // 2**20} MiB free for images in {room.path}",
                {"free_bytes": room.free},
            )
        )
    return checks


def _agent_view(config: DeviceConfig) -> dict[str, Any] | None:
    """The running agent's own connectivity view (it has watched the tunnel's traffic over
    time, which one look from here can't), or None when no agent answers."""
    key = (Store(config.data_dir).get("api-keys", {}) or {}).get("global")
    if not key or not config.listen_port:
        return None
    url = f"{config.local_api_url}/v2/device/status"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=3) as resp:
            body = json.load(resp)
    except (OSError, ValueError):
        return None
    device = body.get("device") if isinstance(body, dict) else None
    return device if isinstance(device, dict) else None


async def check_cloudlink(config: DeviceConfig) -> Check:
    """The running agent's verdict when one answers; else one look of the same verdict's code
    (agent/connectivity/cloudlink.py): a probe through the tunnel when its counters can't tell,
    so a blocked tunnel reads DOWN here as in the agent's status."""
    vpn = vpn_config(config.extra.get("vpn"))
    if vpn is None:
        return Check(
            "cloudlink", True, "cloudlink disabled (no vpn in config.json)", {"enabled": False}
        )
    running = await asyncio.to_thread(_agent_view, config)
    if running is not None:
        link = running.get("cloudlink") or {}
        return Check(
            "cloudlink",
            bool(link.get("ok")),
            f"{link.get('detail', '')} (agent's view)",
            {"enabled": True, "kind": link.get("kind"), "source": "agent"},
        )
    view = await Cloudlink(vpn).look()
    data: dict[str, Any] = {"enabled": True, "kind": vpn.kind.value}
    if view.last_handshake is not None:
        data["last_handshake"] = view.last_handshake
    return Check("cloudlink", view.ok, view.detail, data)


def check_locks(config: DeviceConfig) -> Check:
    holders = [h for hs in held_locks(config.lock_dir).values() for h in hs]
    if not holders:
        return Check("locks", True, "no update lock held")
    names = ", ".join(
        f"app {h.app_id}/{h.service} since {time.strftime('%H:%M:%S', time.gmtime(h.since))}Z"
        + ("" if h.kind is EntryKind.FILE else f" (a {h.kind} at {h.path.name})")
        for h in holders
    )
    return Check(
        "locks",
        True,
        f"update locks held by {names}",
        {"holders": [f"{h.app_id}/{h.service}" for h in holders]},
    )


def check_last_poll(config: DeviceConfig) -> Check:
    saved = Store(config.data_dir).get("status", {}) or {}
    last = saved.get("last_poll")
    if last is None:
        return Check("heartbeat", False, "no successful poll recorded yet")
    age = time.time() - float(last)
    limit = config.poll_interval_ms / 1000.0 + 60.0
    return Check("heartbeat", age <= limit, f"last successful poll {age:.0f} s ago", {"age_s": age})


async def run_checks(config: DeviceConfig) -> list[Check]:
    host = urlsplit(config.api_endpoint).hostname or ""
    checks = [await check_dns(host)]
    checks.append(await check_reach(config.api_endpoint))
    checks.append(await check_clock(config.api_endpoint))
    checks.append(check_last_poll(config))
    checks.append(await check_engine(config.docker_host))
    checks += await check_disks(config)
    checks.append(await check_cloudlink(config))
    checks.append(await asyncio.to_thread(check_locks, config))
    return checks


def verdict(checks: list[Check]) -> str:
    """One line naming the broken link and its likely cause."""
    by = {c.name: c for c in checks}
    net = [by[n] for n in ("dns", "tcp", "tls") if n in by]
    heartbeat_ok = all(c.ok for c in net) and by.get("heartbeat", Check("", True, "")).ok
    cloudlink = by.get("cloudlink")
    cl_ok = cloudlink is None or cloudlink.ok
    cl_enabled = bool(cloudlink and (cloudlink.data or {}).get("enabled"))
    hb = "heartbeat OK" if heartbeat_ok else "heartbeat DOWN"
    cl = "cloudlink disabled" if not cl_enabled else ("cloudlink OK" if cl_ok else "cloudlink DOWN")
    causes: list[str] = []
    if "dns" in by and not by["dns"].ok:
        causes.append(f"{by['dns'].detail} — DNS broken or no network?")
    elif any(not c.ok for c in net):
        bad = next(c for c in net if not c.ok)
        causes.append(f"{bad.detail} — firewall, proxy or no route to the API?")
    elif not heartbeat_ok:
        causes.append(f"{by['heartbeat'].detail} — is the agent running and polling?")
    if cl_enabled and not cl_ok and cloudlink is not None:
        causes.append(f"{cloudlink.detail} — {blocked_hint((cloudlink.data or {}).get('kind'))}")
    if "clock" in by and not by["clock"].ok:
        causes.append(f"{by['clock'].detail} — TLS and tokens may fail; NTP unreachable?")
    if "engine" in by and not by["engine"].ok:
        causes.append(f"engine DOWN: {by['engine'].detail} — is the engine running?")
    for name in ("disk-data", "disk-engine"):
        if name in by and not by[name].ok:
            causes.append(f"low disk: {by[name].detail}")
    if not causes:
        return f"{hb}, {cl}: all checks passed"
    return f"{hb}, {cl}: " + "; ".join(causes)


def blocked_hint(kind: object) -> str:
    """The likely cause of a cloudlink down, by the tunnel's kind."""
    try:
        return BLOCKED_HINT[VpnKind(kind if isinstance(kind, str) else "")]
    except ValueError:
        return BLOCKED_HINT[VpnKind.OPENVPN]  # as before: anything but WireGuard


def render_text(checks: list[Check]) -> str:
    lines = [f"{'ok ' if c.ok else 'BAD'}  {c.name:<11} {c.detail}" for c in checks]
    lines.append("")
    lines.append(verdict(checks))
    return "\n".join(lines)


def render_json(checks: list[Check]) -> str:
    return json.dumps({"checks": [asdict(c) for c in checks], "verdict": verdict(checks)}, indent=2)


def diagnose(config_path: Path, as_json: bool) -> int:
    from agent.config import load_device_config

    config = load_device_config(config_path)
    checks = asyncio.run(run_checks(config))
    print(render_json(checks) if as_json else render_text(checks))
    return 0 if all(c.ok for c in checks) else 1
