"""Host control: reboot and shut down the device.

On a device this goes to systemd-logind over D-Bus (`busctl call org.freedesktop.login1 …
Reboot/PowerOff`), the same request the reference supervisor makes. Tests use
`RecordingHost` (config.json `hostControl: "record"`), which only appends what it was asked to
`{dataDir}/host-actions.jsonl`, so a test can see that a reboot was requested without one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
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


class RecordingHost:
    """A stand-in that records the requested actions (one JSON line each) and does nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def perform(self, action: HostAction) -> None:
        line = json.dumps({"action": action, "t": time.time()}) + "\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        with self.path.open("a") as fh:
            fh.write(line)


def make_host(kind: str, data_dir: Path) -> HostControl:
    if kind == "record":
        return RecordingHost(data_dir / "host-actions.jsonl")
    return LogindHost()
