"""WireGuard probe: is the cloudlink tunnel really carrying traffic?

Userspace WireGuard (wireguard-go, boringtun) answers on its UAPI socket
`/var/run/wireguard/{iface}.sock`; a kernel interface is read over netlink with pyroute2's
WireGuard support. Either way we get the peer's latest handshake and byte counters. Connected =
the interface is up, the handshake is younger than 180 s plus the keepalive, and bytes are
moving (the monitor compares counters between probes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.connectivity import netlink
from agent.waits import wait_for

UAPI_DIR = Path("/var/run/wireguard")
HANDSHAKE_TIMEOUT_S = 180.0  # REJECT_AFTER_TIME: past it, the session can't carry data


@dataclass(frozen=True)
class WireGuardState:
    iface: str
    exists: bool
    up: bool
    last_handshake: float | None  # unix time of the newest peer handshake
    rx_bytes: int
    tx_bytes: int
    keepalive_s: int
    error: str | None = None
    allowed_ips: tuple[str, ...] = ()  # the peers' allowed IPs (UAPI only), e.g. "10.0.0.1/32"

    def handshake_age(self, now: float) -> float | None:
        return None if self.last_handshake is None else max(0.0, now - self.last_handshake)


def parse_uapi(text: str) -> tuple[float | None, int, int, int, str | None]:
    """Sum the peers of a UAPI `get=1` answer: (newest handshake, rx, tx, keepalive, error)."""
    newest: float | None = None
    rx = tx = keepalive = 0
    sec = nsec = 0
    error = None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":  # a new peer starts
            sec = nsec = 0
        elif key == "last_handshake_time_sec":
            sec = int(value)
        elif key == "last_handshake_time_nsec":
            nsec = int(value)
            if sec:
                stamp = sec + nsec / 1e9
                newest = stamp if newest is None else max(newest, stamp)
        elif key == "rx_bytes":
            rx += int(value)
        elif key == "tx_bytes":
            tx += int(value)
        elif key == "persistent_keepalive_interval":
            keepalive = max(keepalive, int(value))
        elif key == "errno" and value != "0":
            error = f"UAPI errno {value}"
    return newest, rx, tx, keepalive, error


def parse_allowed_ips(text: str) -> tuple[str, ...]:
    """The `allowed_ip=` lines of a UAPI `get=1` answer, in order."""
    return tuple(
        line.partition("=")[2] for line in text.splitlines() if line.startswith("allowed_ip=")
    )


async def _uapi_get(iface: str, timeout: float = 2.0) -> str:
    reader, writer = await wait_for(
        asyncio.open_unix_connection(str(UAPI_DIR / f"{iface}.sock")), timeout
    )
    try:
        writer.write(b"get=1\n\n")
        await writer.drain()
        chunks: list[bytes] = []
        while True:
            chunk = await wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            chunks.append(chunk)
            if b"".join(chunks).endswith(b"\n\n"):
                break
        return b"".join(chunks).decode(errors="replace")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def link_up(iface: str) -> tuple[bool, bool]:
    """(exists, administratively up) for a network interface (no pyroute2: agent.connectivity
    .netlink)."""
    return netlink.link_up(iface)


def _kernel_peers(iface: str) -> tuple[float | None, int, int, int]:
    """Read a kernel WireGuard interface over generic netlink (pyroute2)."""
    newest: float | None = None
    rx = tx = keepalive = 0
    with netlink.wireguard_socket() as wg:  # pyroute2's WireGuard module alone
        for msg in wg.info(iface):
            for peer in msg.get_attr("WGDEVICE_A_PEERS") or []:
                newest, rx, tx, keepalive = _fold_peer(peer, newest, rx, tx, keepalive)
    return newest, rx, tx, keepalive


def _fold_peer(
    peer: Any, newest: float | None, rx: int, tx: int, keepalive: int
) -> tuple[float | None, int, int, int]:
    stamp = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME") or {}
    sec = int(stamp.get("tv_sec", 0)) if isinstance(stamp, dict) else 0
    if sec:
        value = sec + int(stamp.get("tv_nsec", 0)) / 1e9
        newest = value if newest is None else max(newest, value)
    rx += int(peer.get_attr("WGPEER_A_RX_BYTES") or 0)
    tx += int(peer.get_attr("WGPEER_A_TX_BYTES") or 0)
    keepalive = max(keepalive, int(peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or 0))
    return newest, rx, tx, keepalive


async def probe(iface: str) -> WireGuardState:
    try:
        exists, up = await asyncio.to_thread(link_up, iface)
    except Exception as exc:
        return WireGuardState(iface, False, False, None, 0, 0, 0, f"netlink: {exc}")
    if not exists:
        return WireGuardState(iface, False, False, None, 0, 0, 0, f"no interface {iface}")
    if (UAPI_DIR / f"{iface}.sock").exists():
        try:
            answer = await _uapi_get(iface)
        except (OSError, TimeoutError) as exc:
            return WireGuardState(iface, True, up, None, 0, 0, 0, f"UAPI: {exc}")
        newest, rx, tx, keepalive, error = parse_uapi(answer)
        allowed = parse_allowed_ips(answer)
        return WireGuardState(iface, True, up, newest, rx, tx, keepalive, error, allowed)
    try:
        newest, rx, tx, keepalive = await asyncio.to_thread(_kernel_peers, iface)
    except Exception as exc:
        return WireGuardState(iface, True, up, None, 0, 0, 0, f"WireGuard netlink: {exc}")
    return WireGuardState(iface, True, up, newest, rx, tx, keepalive)


def now() -> float:
    return time.time()
