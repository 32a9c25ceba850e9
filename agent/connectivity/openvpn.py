"""OpenVPN probe: ask the client's management interface (`state`, and `status` for the link's
byte counters), or, without one, look at the tun link, its counters and the status file the
OS's VPN scripts write (the reference's only source). Whether traffic really flows is judged by
the monitor from the counters and, when they stand still, a probe through the tun device."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from agent.connectivity.wireguard import link_up
from agent.waits import wait_for

STATUS_FILE = Path("/run/openvpn/vpn_status/active")


@dataclass(frozen=True)
class OpenVPNState:
    connected: bool
    state: str  # CONNECTED, RECONNECTING, WAIT, AUTH, GET_CONFIG, EXITING, … or a description
    since: float | None  # unix time of the state change, from the management interface
    source: str  # management | status-file
    error: str | None = None
    rx_bytes: int | None = None  # bytes received from the server (link or tun counter)


def parse_state(lines: list[str]) -> tuple[str, float | None]:
    """The latest `state` line: `1700000000,CONNECTED,SUCCESS,10.8.0.6,…` → (state, time)."""
    latest: tuple[str, float | None] = ("UNKNOWN", None)
    for line in lines:
        parts = line.split(",")
        if len(parts) >= 2 and parts[0].isdigit():
            latest = (parts[1], float(parts[0]))
    return latest[0], latest[1]


def parse_link_rx(lines: list[str]) -> int | None:
    """`status` (version 1) of a client: `TCP/UDP read bytes,N` — all it got from the server."""
    for line in lines:
        name, _, value = line.partition(",")
        if name == "TCP/UDP read bytes" and value.strip().isdecimal():
            return int(value)
    return None


async def _management_state(address: str, timeout: float = 3.0) -> tuple[list[str], list[str]]:
    """The answers to `state` and `status` on one management connection."""
    host, _, port = address.rpartition(":")
    reader, writer = await wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        writer.write(b"state\nstatus\n")
        await writer.drain()
        answers: list[list[str]] = [[]]
        while len(answers) < 3:
            raw = await wait_for(reader.readline(), timeout)
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            if line == "END":
                answers.append([])
            elif not line.startswith(">"):  # skip the banner and real-time notifications
                answers[-1].append(line)
        return answers[0], answers[1] if len(answers) > 1 else []
    finally:
        with contextlib.suppress(OSError):
            writer.write(b"quit\n")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def probe(iface: str, management: str | None) -> OpenVPNState:
    if management:
        try:
            state_lines, status_lines = await _management_state(management)
            state, since = parse_state(state_lines)
        except (OSError, TimeoutError, ValueError) as exc:
            return OpenVPNState(
                False,
                "UNREACHABLE",
                None,
                "management",
                f"management {management}: {exc or type(exc).__name__}",
            )
        rx = parse_link_rx(status_lines)
        return OpenVPNState(state == "CONNECTED", state, since, "management", rx_bytes=rx)
    exists, up = await asyncio.to_thread(link_up, iface)
    active = await asyncio.to_thread(STATUS_FILE.exists)
    if not exists:
        return OpenVPNState(False, "NO_INTERFACE", None, "status-file", f"no interface {iface}")
    state = "CONNECTED" if up and active else ("LINK_DOWN" if not up else "NOT_ACTIVE")
    rx = await asyncio.to_thread(tun_rx_bytes, iface)
    return OpenVPNState(up and active, state, None, "status-file", rx_bytes=rx)


def tun_rx_bytes(iface: str) -> int | None:
    """The tun device's rx counter (what the tunnel delivered), from sysfs."""
    try:
        return int(Path(f"/sys/class/net/{iface}/statistics/rx_bytes").read_text())
    except (OSError, ValueError):
        return None
