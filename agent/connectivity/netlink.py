"""Link state and link events without pyroute2, and pyroute2's WireGuard family alone.

`import pyroute2` (or any of its modules) runs its package `__init__`, which imports every
netlink family it knows: ≈ 8 MB of resident memory, for a device that only needs to know
whether one interface exists and is up, and to hear when it changes. Both are a few syscalls
with the standard library (an ioctl and a NETLINK_ROUTE socket). Only a kernel WireGuard
interface needs pyroute2, for its generic-netlink family (peers, handshakes, counters):
`wireguard_socket()` loads that module alone (≈ 1.6 MB), skipping the package `__init__`.
Whoever imports pyroute2's top-level names later still gets all of them (`_load_rest`).
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
RTMGRP_LINK = 0x1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME = 3
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
_IFINFOMSG_LEN = 16  # family, pad, type, index, flags, change
_RTATTR = struct.Struct("=HH")  # length, type
_EVENTS = {RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK"}


def link_up(iface: str) -> tuple[bool, bool]:
    """(exists, administratively up) for a network interface of this network namespace."""
    try:
        socket.if_nametoindex(iface)
    except (OSError, ValueError):
        return False, False
    request = struct.pack("16sH14x", iface.encode()[:15], 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request)
        except OSError:  # gone in between
            return False, False
    (flags,) = struct.unpack_from("H", answer, 16)
    return True, bool(flags & IFF_UP)


def parse_link_messages(data: bytes) -> Iterator[tuple[str, str | None]]:
    """(event, interface name) for each RTM_NEWLINK / RTM_DELLINK message in one datagram of
    a NETLINK_ROUTE socket; other messages and anything truncated are skipped."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        if kind in _EVENTS:
            yield (
                _EVENTS[kind],
                _ifname(data, offset + _NLMSGHDR.size + _IFINFOMSG_LEN, offset + length),
            )
        offset += (length + 3) & ~3


def _ifname(data: bytes, at: int, end: int) -> str | None:
    while at + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, at)
        if length < _RTATTR.size or at + length > end:
            return None
        if kind & 0x3FFF == IFLA_IFNAME:
            return data[at + _RTATTR.size : at + length].split(b"\0", 1)[0].decode(errors="replace")
        at += (length + 3) & ~3
    return None


def link_events(stop: threading.Event, wait_s: float = 1.0) -> Iterator[tuple[str, str | None]]:
    """Link events of this network namespace as they come, until `stop` is set (checked at
    least every `wait_s`). Raises OSError when netlink can't be opened."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, RTMGRP_LINK))
        sock.settimeout(wait_s)
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            yield from parse_link_messages(data)


def wireguard_socket() -> Any:
    """A new pyroute2 `WireGuard` generic-netlink socket (use it as a context manager)."""
    module = _pyroute2_module("pyroute2.netlink.generic.wireguard")
    return module.WireGuard()


def _pyroute2_module(name: str) -> ModuleType:
    """pyroute2's module `name` without running the package `__init__` first."""
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.loader is None:
            raise ImportError("pyroute2 is not installed")
        package = importlib.util.module_from_spec(spec)
        setattr(package, "__getattr__", _load_rest(package))  # noqa: B010 (PEP 562 hook)
        sys.modules["pyroute2"] = package
    return importlib.import_module(name)


def _load_rest(package: ModuleType) -> Any:
    """PEP 562 hook: the first lookup of a name the package doesn't have yet (`from pyroute2
    import IPRoute` elsewhere) runs the real `__init__` into it, which defines them all. A
    submodule (what pyroute2's own modules import) is loaded as such, not through this."""
    lock = threading.Lock()

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if importlib.util.find_spec(f"{package.__name__}.{attr}") is not None:
            return importlib.import_module(f"{package.__name__}.{attr}")
        with lock:
            if package.__dict__.get("__getattr__") is __getattr__:
                delattr(package, "__getattr__")
                assert package.__spec__ is not None and package.__spec__.loader is not None
                package.__spec__.loader.exec_module(package)
        try:
            return package.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module 'pyroute2' has no attribute {attr!r}") from None

    return __getattr__
