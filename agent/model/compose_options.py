"""Parsers for the compose keys that tune the container's host config: resources (memory,
cpus, ulimits, pids), kernel settings (sysctls, namespaces, security options), DNS and the
per-network endpoint settings. Each reads values as the reference does (docker's conventions:
`64m` = 64 MiB, `cpus: 0.5` = 5e8 NanoCpus, a zero number = unset) and raises `ValueError`
for what the engine would refuse, where that is cheap to know before creating anything.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any

from agent.model.compose_values import MAX_TEXT, parse_port

INT64 = 2**63 - 1
MIN_MEMORY = 6 * 1024 * 1024  # the engine's minimum for mem_limit and mem_reservation
# go-units' RAMInBytes: `512`, `64m`, `1.5g`, `64MiB`, `1 GB` (powers of 1024)
_MEMORY_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgtp]?)i?b?", re.ASCII | re.IGNORECASE)
_MEMORY_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_INT_RE = re.compile(r"-?[0-9]{1,19}", re.ASCII)
_CPUSET_RE = re.compile(r"[0-9]{1,4}(?:-[0-9]{1,4})?(?:,[0-9]{1,4}(?:-[0-9]{1,4})?)*", re.ASCII)
_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}", re.ASCII)
_DEVICE_PERMS_RE = re.compile(r"[rwm]{1,3}", re.ASCII)
_SYSCTL_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.\-/]*", re.ASCII)

# go-units' ulimit names
ULIMIT_NAMES = frozenset(
    [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ]
)
# what the engine's capability check knows (with or without CAP_, any case), and ALL
CAPABILITIES = frozenset(
    [
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYSLOG",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "WAKE_ALARM",
    ]
)
# runc sets only namespaced sysctls: these IPC ones, fs.mqueue.*, net.* and the UTS names
IPC_SYSCTLS = frozenset(
    [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ]
)
UTS_SYSCTLS = frozenset({"kernel.domainname", "kernel.hostname"})
IPC_MODES = frozenset({"none", "private", "shareable", "host"})
SECURITY_KEYS = frozenset({"apparmor", "seccomp", "no-new-privileges", "systempaths"})


def memory_bytes(value: Any) -> int:
    """A size as docker reads it: a number of bytes, or `64m`, `1g`, `1.5GiB`, `512kb`..."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value) <= MAX_TEXT and _MEMORY_RE.fullmatch(value.strip()):
        m = _MEMORY_RE.fullmatch(value.strip())
        assert m is not None
        number = int(float(m[1]) * 1024 ** _MEMORY_UNITS[m[2].lower()])
    else:
        raise ValueError(f"{_short(value)} is not a size (bytes, or a number with k, m, g)")
    if not 0 <= number <= INT64:
        raise ValueError(f"{_short(value)} is out of range")
    return number


def integer(value: Any, lowest: int = -INT64, highest: int = INT64) -> int:
    """An integer, as a number or its text (the reference's checkInt), within bounds."""
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise ValueError(f"{_short(value)} is not an integer")
    if not lowest <= number <= highest:
        raise ValueError(f"{number} is out of range ({lowest} to {highest})")
    return number


def nano_cpus(value: Any) -> int:
    """`cpus: 0.5` → 500000000 NanoCpus (the engine takes at least 0.01 CPU)."""
    number: float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{_short(value)} is not a number of CPUs")
    try:
        number = float(value) if len(str(value)) <= MAX_TEXT else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not 0 <= number <= 1e6:
        raise ValueError(f"{_short(value)} is not a number of CPUs")
    nano = round(number * 1e9)
    if 0 < nano < 10_000_000:
        raise ValueError(f"{_short(value)} is below the engine's minimum of 0.01 CPU")
    return nano


def ulimits(value: Any) -> tuple[tuple[str, int, int], ...]:
    """`{nofile: {soft: 1024, hard: 2048}, nproc: 512}` → sorted (name, soft, hard)."""
    if not isinstance(value, dict):
        raise ValueError("expected an object of name: limit or name: {soft, hard}")
    out = []
    for name, limit in value.items():
        if name not in ULIMIT_NAMES:
            raise ValueError(f"unknown ulimit {_short(name)}")
        if isinstance(limit, dict):
            if set(limit) - {"soft", "hard"} or not {"soft", "hard"} <= set(limit):
                raise ValueError(f"{name}: expected {{soft, hard}}")
            soft, hard = integer(limit["soft"], -1), integer(limit["hard"], -1)
        else:
            soft = hard = integer(limit, -1)
        if hard != -1 and (soft == -1 or soft > hard):
            raise ValueError(f"{name}: the soft limit {soft} is above the hard limit {hard}")
        out.append((str(name), soft, hard))
    return tuple(sorted(out))


def sysctls(value: Any, network_mode: str | None, ipc: str | None) -> tuple[tuple[str, str], ...]:
    """`{net.core.somaxconn: 1024}` or `["net.core.somaxconn=1024"]` → sorted pairs; only the
    namespaced ones runc sets (and not those of a namespace shared with the host)."""
    pairs: list[tuple[Any, Any]] = []  # the dict form's values are anything the YAML held
    if isinstance(value, list):
        for entry in value:
            if not isinstance(entry, str) or "=" not in entry:
                raise ValueError(f"{_short(entry)} is not name=value")
            name, _, raw = entry.partition("=")
            pairs.append((name, raw))
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise ValueError("expected an object or a list of name=value")
    out: dict[str, str] = {}
    for name, raw in pairs:
        if not isinstance(name, str) or not _SYSCTL_RE.fullmatch(name):
            raise ValueError(f"bad sysctl name {_short(name)}")
        if raw is None or isinstance(raw, dict | list):
            raise ValueError(f"{name}: the value must be a string or a number")
        if name.startswith("net."):
            if network_mode == "host":
                raise ValueError(f"{name} can't be set on the host's network")
        elif name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
            if ipc == "host":
                raise ValueError(f"{name} can't be set with the host's IPC namespace")
        elif name not in UTS_SYSCTLS:
            raise ValueError(f"{name} is not namespaced: the engine can't set it in a container")
        out[name] = text(raw)
    return tuple(sorted(out.items()))


def namespace_mode(value: Any, key: str) -> str:
    """`pid` (host, container:<name>) and `ipc` (none, private, shareable, host,
    container:<name>); the engine takes nothing else (`service:` is compose-only)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    mode = value.strip()
    if not mode:
        return ""
    allowed = {"host"} if key == "pid" else IPC_MODES
    if mode in allowed or (mode.startswith("container:") and mode[10:].strip()):
        return mode
    raise ValueError(f"{_short(value)} is not supported ({', '.join(sorted(allowed))}, container:)")


def security_opt(value: str) -> str | None:
    """A security option the engine takes, or None for SELinux `label` ones (which the
    reference leaves out)."""
    key, sep, arg = _kv(value)
    if key == "label":
        return None
    if key not in SECURITY_KEYS | {"writable-cgroups"}:
        raise ValueError(f"unknown security option {_short(value)}")
    if key in ("no-new-privileges", "writable-cgroups"):
        if sep and arg not in ("true", "false"):
            raise ValueError(f"{_short(value)}: expected true or false")
    elif not arg:
        raise ValueError(f"{_short(value)}: no value")
    elif key == "seccomp" and arg != "unconfined" and not arg.lstrip().startswith("{"):
        raise ValueError(f"{_short(value)}: a profile must be given inline as JSON")
    elif key == "systempaths" and arg != "unconfined":
        raise ValueError(f"{_short(value)}: only systempaths=unconfined exists")
    return value


def _kv(value: str) -> tuple[str, str, str]:
    m = re.match(r"([^=:]*)([=:]?)(.*)", value, re.DOTALL)
    assert m is not None
    return m[1], m[2], m[3]


def capability(value: str) -> str:
    name = value.strip().upper().removeprefix("CAP_")
    if name != "ALL" and name not in CAPABILITIES:
        raise ValueError(f"unknown capability {_short(value)}")
    return value


def device(value: str) -> str:
    """`/dev/host[:/dev/container[:rwm]]`."""
    parts = value.split(":")
    if len(parts) > 3 or not all(p.startswith("/") for p in parts[:2]):
        raise ValueError(f"bad device {_short(value)}: expected /dev/x[:/dev/y[:rwm]]")
    if len(parts) == 3 and not _DEVICE_PERMS_RE.fullmatch(parts[2]):
        raise ValueError(f"bad device {_short(value)}: permissions are r, w and m")
    return value


def user(value: str) -> str:
    """`name`, `uid`, `name:group`, `uid:gid` (the engine resolves names at start)."""
    if value == "":  # the image's user
        return value
    parts = value.split(":")
    if len(parts) > 2 or not all(parts) or any(c.isspace() for c in value):
        raise ValueError(f"bad user {_short(value)}: expected user[:group]")
    return value


def ip_address(value: Any, version: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{_short(value)} is not an IP address")
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{_short(value)} is not an IP address") from None
    if version is not None and address.version != version:
        raise ValueError(f"{_short(value)} is not an IPv{version} address")
    return str(address)


def cpuset(value: Any) -> str:
    cpus = text(value).strip()
    if not _CPUSET_RE.fullmatch(cpus):
        raise ValueError(f"{_short(value)} is not a CPU list (like 0-2,4)")
    return cpus


def mac_address(value: Any) -> str:
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value.strip()):
        raise ValueError(f"{_short(value)} is not a MAC address")
    return value.strip().lower()


def expose(value: Any) -> tuple[tuple[int, str], ...]:
    """`3000`, `"3000/udp"`, `"8000-8002"` → the container ports (no host part)."""
    if ":" in str(value):
        raise ValueError(f"bad exposed port {_short(value)}: no host part here")
    rng = parse_port(value)
    return tuple((port, rng.protocol) for port, _ in rng.bindings())


@dataclass(frozen=True)
class Endpoint:
    """A service's settings on one of its networks (compose `networks: {name: {...}}`)."""

    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: tuple[str, ...] = ()


ENDPOINT_KEYS = {
    "aliases": "aliases",
    "ipv4_address": "ipv4_address",
    "ipv4Address": "ipv4_address",
    "ipv6_address": "ipv6_address",
    "ipv6Address": "ipv6_address",
    "link_local_ips": "link_local_ips",
    "linkLocalIps": "link_local_ips",
}


def endpoint(value: Any) -> tuple[Endpoint, list[str]]:
    """A `networks` entry's settings, and the keys of it left out."""
    if value is None:
        return Endpoint(), []
    if not isinstance(value, dict):
        raise ValueError("expected an object (aliases, ipv4_address, ipv6_address)")
    known = {ENDPOINT_KEYS[k]: v for k, v in value.items() if k in ENDPOINT_KEYS}
    aliases = known.get("aliases") or []
    link_local = known.get("link_local_ips") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ValueError("aliases: expected a list of names")
    if not isinstance(link_local, list):
        raise ValueError("link_local_ips: expected a list of addresses")
    v4, v6 = known.get("ipv4_address"), known.get("ipv6_address")
    return (
        Endpoint(
            aliases=tuple(dict.fromkeys(aliases)),
            ipv4_address=None if v4 is None else ip_address(v4, 4),
            ipv6_address=None if v6 is None else ip_address(v6, 6),
            link_local_ips=tuple(ip_address(a) for a in link_local),
        ),
        sorted(str(k) for k in value if k not in ENDPOINT_KEYS),
    )


def text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a value")
    return str(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class IpamPool:
    """One `ipam.config` entry of an app network."""

    subnet: str
    gateway: str | None = None
    ip_range: str | None = None


def ipam_pools(value: Any) -> tuple[IpamPool, ...]:
    """`{driver: default, config: [{subnet: 10.5.0.0/16, gateway: 10.5.0.1}]}` → pools."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not isinstance(value.get("config", []), list):
        raise ValueError("expected {config: [{subnet, gateway, ip_range}]}")
    pools = []
    for entry in value.get("config", []):
        if not isinstance(entry, dict):
            raise ValueError("each config entry must be an object")
        entry = {ENDPOINT_CASE.get(k, k): v for k, v in entry.items()}
        subnet = _network(entry.get("subnet"))
        ip_range = entry.get("ip_range")
        gateway = entry.get("gateway")
        pools.append(
            IpamPool(
                subnet=str(subnet),
                gateway=None if gateway is None else ip_address(gateway, subnet.version),
                ip_range=None if ip_range is None else str(_network(ip_range)),
            )
        )
    return tuple(pools)


ENDPOINT_CASE = {"ipRange": "ip_range"}


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ValueError(f"{_short(value)} is not a subnet (like 10.5.0.0/16)")
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError:
        raise ValueError(f"{_short(value)} is not a subnet (like 10.5.0.0/16)") from None
