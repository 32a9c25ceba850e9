"""One small packet through the tunnel to the peer's tunnel address, and its answer.

ICMP echo first: a raw socket (root or CAP_NET_RAW, as on balenaOS), else an unprivileged ICMP
datagram socket (when `net.ipv4.ping_group_range` lets the agent's group in); without either,
a TCP connect to a port of the peer — a SYN answered by a SYN-ACK or a RST proves the path just
as well. Everything is async on non-blocking sockets (no thread, no blocking call on the loop);
the socket is bound to the tunnel interface where allowed, so the packet can't take another
route.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import os
import socket
import struct
from dataclasses import dataclass

from agent.waits import wait_for

DEFAULT_TCP_PORT = 9  # discard: closed on VPN servers, so the kernel answers a SYN with a RST
_SO_BINDTODEVICE = 25
_SIOCGIFADDR, _SIOCGIFNETMASK = 0x8915, 0x891B
_seq = itertools.count(1)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool  # the peer answered: the tunnel carries traffic both ways
    detail: str


@dataclass(frozen=True)
class ProbeMethod:
    """`vpn.probe` in config.json: "icmp" (default; falls back to TCP when no ICMP socket can
    be opened) or "tcp:PORT"."""

    kind: str  # icmp | tcp
    port: int = DEFAULT_TCP_PORT

    @staticmethod
    def parse(raw: str) -> ProbeMethod:
        if raw == "icmp":
            return ProbeMethod("icmp")
        kind, _, port = raw.partition(":")
        if kind == "tcp" and port.isdecimal() and 0 < int(port) < 65536:
            return ProbeMethod("tcp", int(port))
        raise ValueError(f"{raw!r}: expected icmp or tcp:PORT")


def iface_ipv4(iface: str) -> tuple[str, int] | None:
    """The interface's IPv4 address and prefix length (ioctl, no netlink), None without one."""
    req = struct.pack("256s", iface.encode()[:15])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)[20:24]
            mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, req)[20:24]
    except OSError:
        return None
    return socket.inet_ntoa(addr), bin(int.from_bytes(mask, "big")).count("1")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"da-probe") -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


def is_echo_reply(packet: bytes, raw: bool, source: bytes, ident: int, seq: int) -> bool:
    """Our echo reply? A raw socket sees every ICMP packet with its IP header (filter by the
    peer's address, id and sequence); a datagram socket sees only its own, without the header,
    with the id rewritten by the kernel (filter by sequence)."""
    if raw:
        if len(packet) < 20 or packet[12:16] != source:
            return False
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        return False
    kind, code, _sum, got_ident, got_seq = struct.unpack("!BBHHH", packet[:8])
    return kind == 0 and code == 0 and got_seq == seq and (not raw or got_ident == ident)


# (socket type, raw?) in the order tried: raw needs CAP_NET_RAW, datagram needs the agent's
# group in net.ipv4.ping_group_range
ICMP_SOCKETS: tuple[tuple[int, bool], ...] = ((socket.SOCK_RAW, True), (socket.SOCK_DGRAM, False))


def _open_icmp() -> tuple[socket.socket, bool] | None:
    for kind, raw in ICMP_SOCKETS:
        try:
            return socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP), raw
        except PermissionError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT):
                raise
    return None


def _bind_device(sock: socket.socket, iface: str | None) -> None:
    if iface:
        with contextlib.suppress(OSError):  # needs CAP_NET_RAW; the route is the fallback
            sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, iface.encode())


def _unanswered(what: str, timeout: float, exc: OSError) -> ProbeResult:
    """A probe that timed out or failed (TimeoutError is an OSError)."""
    if isinstance(exc, TimeoutError):
        return ProbeResult(False, f"no answer to {what} in {timeout:.0f} s")
    return ProbeResult(False, f"{what}: {exc.strerror or exc}")


async def icmp_echo(address: str, timeout: float, iface: str | None = None) -> ProbeResult | None:
    """One echo request; None when no ICMP socket can be opened here."""
    opened = _open_icmp()
    if opened is None:
        return None
    sock, raw = opened
    loop = asyncio.get_running_loop()
    ident, seq = os.getpid() & 0xFFFF, next(_seq) & 0xFFFF
    what = f"ICMP echo to {address}"
    with sock:
        sock.setblocking(False)
        _bind_device(sock, iface)
        source = socket.inet_aton(address)

        async def reply() -> None:
            while not is_echo_reply(await loop.sock_recv(sock, 2048), raw, source, ident, seq):
                pass

        try:
            await loop.sock_sendto(sock, echo_request(ident, seq), (address, 0))
            await wait_for(reply(), timeout)
        except OSError as exc:
            return _unanswered(what, timeout, exc)
    return ProbeResult(True, f"{what} answered")


async def tcp_connect(
    address: str, port: int, timeout: float, iface: str | None = None
) -> ProbeResult:
    """A SYN; a SYN-ACK or a RST back proves the path."""
    loop = asyncio.get_running_loop()
    what = f"TCP to {address}:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        _bind_device(sock, iface)
        try:
            await wait_for(loop.sock_connect(sock, (address, port)), timeout)
        except ConnectionRefusedError:
            return ProbeResult(True, f"{what} refused (RST: the peer answered)")
        except OSError as exc:
            return _unanswered(what, timeout, exc)
    return ProbeResult(True, f"{what} accepted")


async def send_probe(
    method: ProbeMethod, address: str, timeout: float, iface: str | None = None
) -> ProbeResult:
    """One probe; a socket that can't even be opened (no descriptors left, no IPv4) is an
    unanswered probe with the reason, never an exception for the monitor."""
    try:
        if method.kind == "icmp":
            result = await icmp_echo(address, timeout, iface)
            if result is not None:
                return result
        return await tcp_connect(address, method.port, timeout, iface)
    except OSError as exc:
        return ProbeResult(False, f"probe to {address}: {exc.strerror or exc}")


ICMP = ProbeMethod("icmp")
