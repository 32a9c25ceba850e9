"""Device facts and metrics for the state report, read from /proc, /sys and the OS release.

Metrics are bucketed (CPU to 10 %, memory to 5 % of total, storage to 1 % of total, temperature
to 5 °C) so an idle device's report does not change every time it is read.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

from agent import SUPERVISOR_COMPAT_VERSION


def _bucket(value: float, step: float) -> int:
    return int(round(value / step) * step) if step > 0 else int(value)


class CpuSampler:
    """CPU usage between two reads of /proc/stat."""

    def __init__(self, stat_path: Path = Path("/proc/stat")) -> None:
        self._path = stat_path
        self._last: tuple[int, int] | None = self._read()

    def _read(self) -> tuple[int, int] | None:
        try:
            first = self._path.read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        values = [int(v) for v in first]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    def usage_percent(self) -> int | None:
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        total, idle = now[0] - last[0], now[1] - last[1]
        return round(100 * (total - idle) / total)


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _cpu_temp() -> int | None:
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            return int(zone.joinpath("temp").read_text().strip()) // 1000
        except (OSError, ValueError):
            continue
    return None


def metrics(cpu: CpuSampler, data_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    usage = cpu.usage_percent()
    if usage is not None:
        out["cpu_usage"] = _bucket(usage, 10)
    mem = _meminfo()
    if "MemTotal" in mem:
        total_mb = mem["MemTotal"] // 1024
        used_mb = (mem["MemTotal"] - mem.get("MemAvailable", mem.get("MemFree", 0))) // 1024
        out["memory_total"] = total_mb
        out["memory_usage"] = _bucket(used_mb, max(1, total_mb * 0.05))
    try:
        disk = shutil.disk_usage(data_dir)
        total = disk.total // (1024 * 1024)
        out["storage_total"] = total
        out["storage_usage"] = _bucket(disk.used // (1024 * 1024), max(1, total * 0.01))
    except OSError:
        pass
    temp = _cpu_temp()
    if temp is not None:
        out["cpu_temp"] = _bucket(temp, 5)
    return out


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            for line in Path(path).read_text().splitlines():
                key, _, value = line.partition("=")
                out[key] = value.strip().strip('"')
            break
        except OSError:
            continue
    return out


def _addresses() -> tuple[list[str], list[str]]:
    """IPv4 addresses and MACs of the non-loopback, non-container interfaces."""
    ips: list[str] = []
    macs: list[str] = []
    skip = ("lo", "docker", "br-", "veth", "balena", "resin", "supervisor")
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        return ips, macs
    for name in names:
        if name.startswith(skip):
            continue
        try:
            mac = Path(f"/sys/class/net/{name}/address").read_text().strip()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            macs.append(mac.upper())
    try:
        host = socket.gethostname()
        for info in socket.getaddrinfo(host, None, socket.AF_INET):
            addr = str(info[4][0])
            if not addr.startswith("127.") and addr not in ips:
                ips.append(addr)
    except OSError:
        pass
    return ips, macs


def device_fields(api_port: int) -> dict[str, Any]:
    osr = _os_release()
    ips, macs = _addresses()
    fields: dict[str, Any] = {
        "api_port": api_port,
        "ip_address": " ".join(ips),
        "mac_address": " ".join(macs),
        "os_version": osr.get("PRETTY_NAME", ""),
        "os_variant": osr.get("VARIANT_ID", "prod"),
        "supervisor_version": SUPERVISOR_COMPAT_VERSION,
    }
    return fields


VPN_ACTIVE = Path("/run/openvpn/vpn_status/active")  # written by balenaOS's openvpn hooks
_VPN_CONTROL = ("BALENA_SUPERVISOR_VPN_CONTROL", "RESIN_SUPERVISOR_VPN_CONTROL")


def vpn_state(config_vars: dict[str, str], active: Path = VPN_ACTIVE) -> dict[str, bool]:
    """`enabled`: the fleet's VPN control var (default on); `connected`: the OS's openvpn says
    the tunnel is up. (A real probe of the tunnel comes with the connectivity work.)"""
    raw = next((config_vars[k] for k in _VPN_CONTROL if k in config_vars), "true")
    enabled = raw.strip().lower() not in ("0", "false", "off", "no")
    return {"enabled": enabled, "connected": active.exists()}


# `uname -m` -> balena's architecture slug (device-type.json `arch`)
_ARCH_SLUGS = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv7l": "armv7hf",
    "armv6l": "rpi",
    "i386": "i386",
    "i686": "i386",
}


def device_arch(configured: Any = None, machine: str | None = None) -> str:
    """BALENA_DEVICE_ARCH: config.json `deviceArch` when set, else balena's slug for the
    machine (`uname -m`), else the machine name itself."""
    if isinstance(configured, str) and configured.strip():
        return configured.strip()
    machine = os.uname().machine if machine is None else machine
    return _ARCH_SLUGS.get(machine, machine)
