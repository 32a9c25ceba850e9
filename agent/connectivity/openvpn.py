"""OpenVPN probe: ask the client's management interface (`state`), or, without one, look at
the tun link and the status file the OS's VPN scripts write (the reference's only source)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from agent.connectivity.wireguard import link_up

STATUS_FILE = Path("/run/openvpn/vpn_status/active")


@dataclass(frozen=True)
class OpenVPNState:
    connected: bool
    state: str  # CONNECTED, RECONNECTING, WAIT, AUTH, GET_CONFIG, EXITING, … or a description
    since: float | None  # unix time of the state change, from the management interface
    source: str  # management | status-file
    error: str | None = None


def parse_state(lines: list[str]) -> tuple[str, float | None]:
    """The latest `state` line: `1700000000,CONNECTED,SUCCESS,10.8.0.6,…` → (state, time)."""
    latest: tuple[str, float | None] = ("UNKNOWN", None)
    for line in lines:
        parts = line.split(",")
        if len(parts) >= 2 and parts[0].isdigit():
            latest = (parts[1], float(parts[0]))
    return latest[0], latest[1]


async def _management_state(address: str, timeout: float = 3.0) -> list[str]:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        writer.write(b"state\n")
        await writer.drain()
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(reader.readline(), timeout)
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            if line == "END":
                break
            if not line.startswith(">"):  # skip the banner and real-time notifications
                lines.append(line)
        return lines
    finally:
        with contextlib.suppress(OSError):
            writer.write(b"quit\n")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def probe(iface: str, management: str | None) -> OpenVPNState:
    if management:
        try:
            state, since = parse_state(await _management_state(management))
        except (OSError, TimeoutError, ValueError) as exc:
            return OpenVPNState(
                False,
                "UNREACHABLE",
                None,
                "management",
                f"management {management}: {exc or type(exc).__name__}",
            )
        return OpenVPNState(state == "CONNECTED", state, since, "management")
    exists, up = await asyncio.to_thread(link_up, iface)
    active = await asyncio.to_thread(STATUS_FILE.exists)
    if not exists:
        return OpenVPNState(False, "NO_INTERFACE", None, "status-file", f"no interface {iface}")
    state = "CONNECTED" if up and active else ("LINK_DOWN" if not up else "NOT_ACTIVE")
    return OpenVPNState(up and active, state, None, "status-file")
