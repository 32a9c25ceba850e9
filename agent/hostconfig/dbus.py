"""The host's D-Bus services the host config needs, through `busctl` (systemd's own client; no
D-Bus library in the agent): systemd-hostnamed for the hostname, systemd for restarting the
proxy's units. A thin shell: every call is one `busctl` run; no busctl, no system bus or no
such service is `HostBusError`, which the API answers with 503."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from agent.errors import AgentError
from agent.waits import wait_for

log = structlog.get_logger("agent.hostconfig")

HOSTNAMED = ("org.freedesktop.hostname1", "/org/freedesktop/hostname1")
SYSTEMD = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
PROXY_UNITS = ("balena-proxy-config.service", "resin-proxy-config.service", "redsocks.service")
TIMEOUT_S = 25.0


class HostBusError(AgentError):
    """The host's D-Bus service could not be asked (no busctl, no bus, no service)."""


class HostConfigBus(Protocol):
    async def hostname(self) -> str: ...
    async def set_hostname(self, name: str) -> None: ...
    async def restart_proxy_units(self) -> list[str]: ...


class HostBus:
    def __init__(self, busctl: str | None = None) -> None:
        self._busctl = busctl or shutil.which("busctl")

    async def _run(self, *args: str) -> str:
        if self._busctl is None:
            raise HostBusError("busctl (systemd) is not installed on this host")
        try:
            proc = await asyncio.create_subprocess_exec(
                self._busctl,
                f"--timeout={int(TIMEOUT_S)}",
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await wait_for(proc.communicate(), TIMEOUT_S + 5)
        except (OSError, TimeoutError) as exc:
            raise HostBusError(f"busctl failed: {exc!r}") from exc
        if proc.returncode != 0:
            raise HostBusError(" ".join(err.decode(errors="replace").split())[:300] or "failed")
        return out.decode(errors="replace").strip()

    async def hostname(self) -> str:
        """hostnamed's static hostname (busctl prints `s "name"`)."""
        out = await self._run("get-property", *HOSTNAMED, HOSTNAMED[0], "StaticHostname")
        return out.partition(" ")[2].strip().strip('"')

    async def set_hostname(self, name: str) -> None:
        try:
            await self._run(
                "call", *HOSTNAMED, HOSTNAMED[0], "SetStaticHostname", "sb", name, "false"
            )
            await self._run("call", *HOSTNAMED, HOSTNAMED[0], "SetHostname", "sb", name, "false")
        except HostBusError as exc:
            raise HostBusError(
                f"cannot set the hostname: systemd-hostnamed is not reachable over D-Bus ({exc})"
            ) from exc

    async def restart_proxy_units(self) -> list[str]:
        """Restart the proxy's units that the host has loaded (balenaOS: balena-proxy-config
        and redsocks); the names restarted. A host without them (or without systemd) keeps
        the files only."""
        restarted = []
        for unit in PROXY_UNITS:
            try:
                await self._run("call", *SYSTEMD, f"{SYSTEMD[0]}.Manager", "GetUnit", "s", unit)
            except HostBusError:
                continue  # not loaded here
            await self._run(
                "call", *SYSTEMD, f"{SYSTEMD[0]}.Manager", "RestartUnit", "ss", unit, "replace"
            )
            restarted.append(unit)
        return restarted


# Set before the agent starts by a test entry point (testbed/agent_main.py): called with the
# data dir, it returns what takes the host's D-Bus services' place. None on a device.
STAND_IN: Callable[[Path], HostConfigBus] | None = None


def make_host_bus(data_dir: Path) -> HostConfigBus:
    return HostBus() if STAND_IN is None else STAND_IN(data_dir)
