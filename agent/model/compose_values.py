"""Parsers for compose values that need more than a type check: port mappings, durations and
volume entries. Each returns what the container spec needs, or raises `ValueError` with a
reason; `target.py` turns that into the app's rejection (naming service and key), so whatever
the model accepts can be turned into a container spec (`engine/compose.py`).
"""

from __future__ import annotations

import ipaddress
import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any

# the engine keeps durations as int64 nanoseconds
MAX_DURATION_S = (2**63 - 1) // 1_000_000_000
MAX_PORT = 65535
# longer port or duration texts are junk; the cap also keeps the regular expressions linear
MAX_TEXT = 64
# mounted into every container by the agent (the update-lock dirs)
RESERVED_MOUNTS = ("/tmp/balena", "/tmp/resin")
VOLUME_MODES = frozenset(
    {
        "ro",
        "rw",
        "z",
        "Z",
        "nocopy",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "consistent",
        "cached",
        "delegated",
    }
)

# [host_ip:][host_port[-host_end]:]port[-port_end][/protocol], as the reference's PortMap reads
# them (an IPv6 host may also come in brackets); an empty host port lets the engine pick one
_PORT_RE = re.compile(
    r"(?:(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+):)?"
    r"(?P<host>[0-9]*)(?:-(?P<host_end>[0-9]+))?:)?"
    r"(?P<port>[0-9]+)(?:-(?P<port_end>[0-9]+))?"
    r"(?:/(?P<proto>tcp|udp|sctp))?",
    re.ASCII,
)


@dataclass(frozen=True)
class PortRange:
    """`count` consecutive container ports, each published on the matching host port."""

    port: int
    count: int
    protocol: str = "tcp"
    host_ip: str = ""  # "" = every address
    host_port: int | None = None  # None = the engine picks

    def bindings(self) -> list[tuple[int, int | None]]:
        """(container port, host port) for every port of the range."""
        return [
            (self.port + i, None if self.host_port is None else self.host_port + i)
            for i in range(self.count)
        ]


def parse_port(value: Any) -> PortRange:
    """A compose `ports` entry: `80`, `"8080:80/udp"`, `"127.0.0.1:8000-8002:8000-8002"`...

    As the reference does, a lone container port (or range) is published on the same host
    port; ranges on both sides must be of the same length."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"bad port mapping {value!r}: expected a string or a number")
    if len(value) > MAX_TEXT:
        raise ValueError(f"bad port mapping {value[:MAX_TEXT]!r}...: too long")
    m = _PORT_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"bad port mapping {value!r}")
    port = _port_number(m["port"], value, lowest=1)
    port_end = _port_number(m["port_end"], value, lowest=1) if m["port_end"] else port
    if port_end < port:
        raise ValueError(f"bad port mapping {value!r}: range ends before it starts")
    count = port_end - port + 1
    host_ip = ""
    if m["ip"] is not None:
        host_ip = m["ip"].strip("[]")
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ValueError(
                f"bad port mapping {value!r}: {host_ip!r} is not an IP address"
            ) from None
    host_port: int | None
    if m["host"] is None:  # no host part: the same port(s) on the host
        host_port = port
    elif m["host"] == "":
        if m["host_end"] is not None:
            raise ValueError(f"bad port mapping {value!r}")
        host_port = None
    else:
        host_port = _port_number(m["host"], value, lowest=0)
        host_end = _port_number(m["host_end"], value, lowest=0) if m["host_end"] else host_port
        if host_end - host_port + 1 != count:
            raise ValueError(
                f"bad port mapping {value!r}: host and container ranges differ in length"
            )
    return PortRange(
        port=port, count=count, protocol=m["proto"] or "tcp", host_ip=host_ip, host_port=host_port
    )


def _port_number(text: str, spec: str, lowest: int) -> int:
    number = int(text) if len(text) <= 5 else MAX_PORT + 1
    if not lowest <= number <= MAX_PORT:
        raise ValueError(f"bad port mapping {spec!r}: port {text} out of range")
    return number


_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|h|m|s)", re.ASCII)
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)
_UNITS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}


def parse_duration_value(value: Any) -> float:
    """Compose durations: `1m30s`, `500ms`, `10s`, or a bare number of seconds; finite,
    non-negative and small enough for the engine's nanosecond counters."""
    seconds: float
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        if not 0 <= value <= MAX_DURATION_S:  # compared as an int: no float overflow
            raise ValueError(f"{value!r} is out of range (0 to {MAX_DURATION_S} s)")
        return float(value)
    if isinstance(value, float):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TEXT:
            raise ValueError(f"{value[:MAX_TEXT]!r}... is not a duration (too long)")
        if _NUMBER_RE.fullmatch(text):
            seconds = float(text)
        elif text and _DURATION_PART_RE.sub("", text) == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART_RE.findall(text))
        else:
            raise ValueError(f"{value!r} is not a duration")
    else:
        raise ValueError(f"{value!r} is not a duration")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION_S:
        raise ValueError(f"{value!r} is out of range (0 to {MAX_DURATION_S} s)")
    return seconds


@dataclass(frozen=True)
class VolumeEntry:
    """One compose `volumes` entry: `spec` to mount (normalized short syntax), `tmpfs` (a long
    syntax `type: tmpfs` entry, as a `tmpfs` one), or `ignored` (a host bind mount, which the
    reference never honours from compose: host access comes only from `io.balena.features.*`
    labels)."""

    spec: str | None = None
    target: str | None = None
    tmpfs: str | None = None
    ignored: str | None = None


def parse_volume(value: Any) -> VolumeEntry:
    """`name:/path[:mode]` (a named volume) and `/path` (an anonymous one) are kept; a bind
    mount (`/host:/path`, `./dir:/path`, `~/dir:/path`, or long syntax with `type: bind`) is
    ignored, as the reference does; anything else raises."""
    if isinstance(value, dict):
        return _long_volume(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    parts = [p.strip() for p in value.split(":")]
    if len(parts) == 1:
        return VolumeEntry(spec=parts[0], target=_container_path(parts[0], value))
    if len(parts) > 3:
        raise ValueError(f"bad volume {value!r}: expected source:target[:mode]")
    source, target = parts[0], parts[1]
    if source.startswith(("/", ".", "~")):
        return VolumeEntry(ignored=value)
    if not source:
        raise ValueError(f"bad volume {value!r}: no volume name")
    path = _container_path(target, value)
    if len(parts) == 3:
        modes = parts[2].split(",")
        if not all(mode in VOLUME_MODES for mode in modes):
            raise ValueError(f"bad volume {value!r}: unknown mode {parts[2]!r}")
    return VolumeEntry(spec=":".join(parts), target=path)


def _long_volume(value: dict[str, Any]) -> VolumeEntry:
    """Long syntax (`{type, source, target, read_only, volume: {nocopy}, tmpfs: {size}}`, keys
    snake_case or camelCase) in its short form."""
    kind = value.get("type")
    if kind == "bind":
        return VolumeEntry(ignored=_describe(value))
    if kind not in ("volume", "tmpfs"):
        raise ValueError(f"bad volume {_describe(value)}: type must be volume, bind or tmpfs")
    target = value.get("target")
    if not isinstance(target, str):
        raise ValueError(f"bad volume {_describe(value)}: 'target' must be a string")
    path = _container_path(target.strip(), _describe(value))
    read_only = value.get("read_only", value.get("readOnly", False))
    if not isinstance(read_only, bool):
        raise ValueError(f"bad volume {_describe(value)}: 'read_only' must be true or false")
    if kind == "tmpfs":
        return VolumeEntry(tmpfs=_long_tmpfs(value, path, read_only))
    source = value.get("source")
    options = ["ro"] if read_only else []
    volume_opts = value.get("volume")
    if isinstance(volume_opts, dict) and volume_opts.get("nocopy") is True:
        options.append("nocopy")
    if source is None or source == "":
        if options:
            raise ValueError(f"bad volume {_describe(value)}: options need a named volume")
        return VolumeEntry(spec=path, target=path)
    if not isinstance(source, str) or source.strip().startswith(("/", ".", "~")):
        raise ValueError(f"bad volume {_describe(value)}: 'source' must be a volume name")
    spec = f"{source.strip()}:{target.strip()}" + (f":{','.join(options)}" if options else "")
    return VolumeEntry(spec=spec, target=path)


def _long_tmpfs(value: dict[str, Any], path: str, read_only: bool) -> str:
    """A long syntax `type: tmpfs` entry as a `tmpfs` one: `/path[:size=N][,ro]`."""
    opts = value.get("tmpfs")
    size = opts.get("size") if isinstance(opts, dict) else None
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError(f"bad volume {_describe(value)}: tmpfs.size must be a number of bytes")
    options = ([] if size is None else [f"size={size}"]) + (["ro"] if read_only else [])
    return f"{path}:{','.join(options)}" if options else path


def _container_path(path: str, spec: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"bad volume {spec!r}: the container path must be absolute")
    return posixpath.normpath(path)


def tmpfs_target(value: str) -> str:
    """The mount point of a `tmpfs` entry (`/path[:options]`)."""
    path = value.split(":", 1)[0].strip()
    if not path.startswith("/"):
        raise ValueError(f"bad tmpfs {value!r}: the path must be absolute")
    return posixpath.normpath(path)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
