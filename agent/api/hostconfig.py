"""GET/PATCH /v1/device/host-config: the hostname and the proxy, as the reference serves them.

GET answers `{"network": {"hostname": ..., "proxy": {...}}}` (`proxy` only when one is set).
PATCH takes the same shape (agent/hostconfig/parse.py validates it as the reference does: 400
for what it can't read), refuses with 423 while an app holds its update lock (unless `force`
or the fleet's lock override), stores the proxy under `{hostBootDir}/system-proxy/` and
restarts the host's proxy units where it has them, sets the hostname through
systemd-hostnamed (503 when that can't be reached) and answers 200 `OK`. Under the test entry
point (testbed/agent_main.py) the hostname is recorded instead, as reboots are.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from agent.api import actions
from agent.api.common import ApiError, flag, json_response, read_body, text_response
from agent.api.ports import CONTEXT, ApiContext
from agent.hostconfig.dbus import HostBusError, HostConfigBus, make_host_bus
from agent.hostconfig.parse import HostConfigInvalid, parse
from agent.hostconfig.proxy import ProxyFiles

log = structlog.get_logger("agent.api")


def boot_dir(ctx: ApiContext) -> Path:
    return ctx.settings.host_boot_dir or ctx.settings.data_dir / "boot"


def host_bus(ctx: ApiContext) -> HostConfigBus:
    """hostnamed/systemd over D-Bus (or what a test entry point put in their place)."""
    return make_host_bus(ctx.settings.data_dir)


async def get_host_config(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        hostname = await host_bus(ctx).hostname()
    except HostBusError:
        hostname = socket.gethostname()  # no hostnamed: the kernel's (the same name)
    try:
        proxy = await asyncio.to_thread(ProxyFiles(boot_dir(ctx)).read)
    except (OSError, UnicodeError) as exc:  # e.g. the boot partition unreadable
        raise ApiError(503, f"could not read the proxy settings: {exc}") from exc
    network: dict[str, Any] = {"hostname": hostname}
    if proxy is not None:
        network["proxy"] = proxy
    return json_response({"network": network})


async def patch_host_config(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await read_body(request)
    try:
        patch = parse(body)
    except HostConfigInvalid as exc:
        raise ApiError(400, str(exc)) from exc
    force = flag(body, "force")
    if patch.empty:
        return text_response("OK")
    if not (force or ctx.override_lock()) and await actions.locked(ctx):
        raise ApiError(423, actions.LOCKED)
    bus = host_bus(ctx)
    if patch.proxy is not None:
        files = ProxyFiles(boot_dir(ctx))
        try:
            await asyncio.to_thread(files.patch, patch.proxy, patch.no_proxy)
        except (OSError, UnicodeError) as exc:
            raise ApiError(503, f"could not store the proxy settings: {exc}") from exc
        try:
            restarted = await bus.restart_proxy_units()
        except HostBusError as exc:
            raise ApiError(503, f"proxy stored, but restarting its units failed: {exc}") from exc
        log.info(
            "host_config_proxy_set",
            dir=str(files.dir),
            removed=not patch.proxy,
            applied=restarted or "stored only: no proxy units restarted on this host",
        )
    if patch.hostname is not None:
        name = patch.hostname or ctx.settings.device_uuid[:7]
        try:
            await bus.set_hostname(name)
        except HostBusError as exc:
            log.error("host_config_hostname_failed", hostname=name, error=str(exc))
            raise ApiError(503, str(exc)) from exc
        log.info("host_config_hostname_set", hostname=name)
    return text_response("OK")
