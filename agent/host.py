"""Host control: reboot and shut down the device.

On a device this goes to systemd-logind over D-Bus (`busctl call org.freedesktop.login1 …
Reboot/PowerOff`), the same request the reference supervisor makes. `STAND_IN` is the seam a
test entry point uses to put something else in logind's place (testbed/agent_main.py installs a
recorder); nothing here knows what.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Protocol, assert_never

import structlog

from agent.errors import AgentError

log = structlog.get_logger("agent.host")


class HostAction(StrEnum):
    """POST /v1/reboot and /v1/shutdown."""

    REBOOT = "reboot"
    SHUTDOWN = "shutdown"


def logind_method(action: HostAction) -> str:
    match action:
        case HostAction.REBOOT:
            return "Reboot"
        case HostAction.SHUTDOWN:
            return "PowerOff"
        case _:
            assert_never(action)


class HostError(AgentError):
    """The host refused or could not be asked (no logind, no D-Bus)."""


class HostControl(Protocol):
    async def perform(self, action: HostAction) -> None: ...


class LogindHost:
    """systemd-logind's Manager.Reboot / Manager.PowerOff, through `busctl`."""

    def __init__(self, busctl: str | None = None) -> None:
        self._busctl = busctl or shutil.which("busctl")

    async def perform(self, action: HostAction) -> None:
        if self._busctl is None:
            raise HostError(f"cannot {action}: busctl (systemd) is not installed on this host")
        proc = await asyncio.create_subprocess_exec(
            self._busctl,
            "call",
            "org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            logind_method(action),
            "b",
            "false",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise HostError(f"logind refused to {action}: {err.decode(errors='replace').strip()}")


# Set before the agent starts by a test entry point: called with the data dir, it returns what
# takes logind's place. None (logind) on a device.
STAND_IN: Callable[[Path], HostControl] | None = None


def make_host(data_dir: Path) -> HostControl:
    return LogindHost() if STAND_IN is None else STAND_IN(data_dir)
