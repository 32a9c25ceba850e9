"""TEST ONLY: a recording stand-in for the host, installed into an agent process by
`python -m testbed.agent_main` when $DEVICE_AGENT_TEST_RECORD_HOST=1 (AgentProcess asks for it
unless `record_host` is off); nothing under agent/ imports this.

Reboot and shutdown (POST /v1/reboot, /v1/shutdown) and the hostname (PATCH
/v1/device/host-config) are appended to `{dataDir}/host-actions.jsonl`, one JSON line each
(`{"action": "reboot", "t": ...}`, `{"action": "hostname", "hostname": ..., "t": ...}`), and
the hostname is read back from there; no unit is restarted. A test sees what the agent asked of
the host without the machine running the tests being rebooted, renamed or touched.

The agent's seams it uses: `agent.host.STAND_IN` and `agent.hostconfig.dbus.STAND_IN`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from agent.host import HostAction
from agent.hostconfig.dbus import HostBusError

RECORD_HOST_ENV = "DEVICE_AGENT_TEST_RECORD_HOST"
ACTIONS_FILE = "host-actions.jsonl"


def _append(path: Path, entry: dict[str, object]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


class RecordingHost:
    """Takes logind's place: records the requested actions and does nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def perform(self, action: HostAction) -> None:
        entry: dict[str, object] = {"action": str(action), "t": time.time()}
        await asyncio.to_thread(_append, self.path, entry)


class RecordingHostBus:
    """Takes hostnamed's and systemd's place: the hostname is recorded next to the reboots and
    read back from there (HostBusError until one is set, as without hostnamed); no proxy unit
    is restarted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def hostname(self) -> str:
        return await asyncio.to_thread(self._last)

    def _last(self) -> str:
        name = None
        try:
            for line in self.path.read_text().splitlines():
                entry = json.loads(line) if line.strip() else {}
                if entry.get("action") == "hostname":
                    name = entry.get("hostname")
        except (OSError, ValueError):
            pass
        if name is None:
            raise HostBusError("no hostname recorded yet")
        return str(name)

    async def set_hostname(self, name: str) -> None:
        entry: dict[str, object] = {"action": "hostname", "hostname": name, "t": time.time()}
        await asyncio.to_thread(_append, self.path, entry)

    async def restart_proxy_units(self) -> list[str]:
        return []


def install(environ: Mapping[str, str] = os.environ) -> bool:
    """Put the recorders in the host's place in this process's agent, before it starts, if
    $DEVICE_AGENT_TEST_RECORD_HOST=1; True if it did."""
    if environ.get(RECORD_HOST_ENV) != "1":
        return False
    from agent import host
    from agent.hostconfig import dbus

    host.STAND_IN = lambda data_dir: RecordingHost(data_dir / ACTIONS_FILE)
    dbus.STAND_IN = lambda data_dir: RecordingHostBus(data_dir / ACTIONS_FILE)
    return True
