"""`io.balena.features.*` labels → the mounts, environment and device requests balena's
supervisor grants for them (reference: `addFeaturesFromLabels` in src/compose/utils.ts), and
the `io.resin.*` → `io.balena.*` label spelling it normalizes.

These mounts are host access the agent grants on purpose, for a label the release asks for
(compose bind mounts stay refused). Where the host lacks what a label needs, the mount or
variable is left out and said so (`left_out`); the service still starts.

`features()` is pure: the host's facts are read once (`read_host_facts`) and passed in.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FEATURE_PREFIX = "io.balena.features."
TRUTHY = frozenset({"1", "true", "on"})  # the reference's checkTruthy, lower-cased

# in-container path of the engine socket (mounted under /host/run so it can't clash with systemd)
CONTAINER_ENGINE_SOCKET = "/host/run/balena-engine.sock"
ENGINE_SOCKET_TARGETS = (CONTAINER_ENGINE_SOCKET, "/var/run/docker.sock", "/var/run/balena.sock")
GPU_HOOK = "nvidia-container-runtime-hook"  # the engine offers `gpu` device requests with it

# label -> (host path, container path, mode) bind mounts granted when the host has the path
_PATH_BINDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "journal-logs": (
        ("/var/log/journal", "/var/log/journal", "ro"),
        ("/run/log/journal", "/run/log/journal", "ro"),
        ("/etc/machine-id", "/etc/machine-id", "ro"),
    ),
    "dbus": (("/run/dbus", "/host/run/dbus", ""),),
    "kernel-modules": (("/lib/modules", "/lib/modules", ""),),
    "firmware": (("/lib/firmware", "/lib/firmware", ""),),
    "sysfs": (("/sys", "/sys", ""),),
    "procfs": (("/proc", "/proc", ""),),
}
HOST_PATHS = tuple(sorted({src for binds in _PATH_BINDS.values() for src, _, _ in binds}))
# handled elsewhere: supervisor-api (engine/compose.py), optional (model/contracts.py)
KNOWN_FEATURES = frozenset(
    {*_PATH_BINDS, "balena-socket", "balena-api", "gpu", "host-os.board-rev", "extra-firmware"}
    | {"supervisor-api", "optional"}
)


@dataclass(frozen=True)
class HostFacts:
    """What the host offers the feature labels, read once at start (`read_host_facts`)."""

    existing_paths: frozenset[str] = frozenset()  # which of HOST_PATHS exist on the host
    engine_host: str = ""  # the agent's `dockerHost`
    board_rev: str | None = None  # BALENA_BOARD_REV (or RESIN_) of the host's os-release
    os_version: str = ""  # PRETTY_NAME of the host's os-release (HOST_OS_VERSION)
    os_slug: str = ""  # ID of the host's os-release (contracts' sw.os slug)
    os_semver: str = ""  # VERSION of the host's os-release (contracts' sw.os version)
    gpu: bool = False  # the engine has a GPU device driver (nvidia-container-runtime-hook)

    @property
    def engine_socket(self) -> str | None:
        """The host path of the engine's unix socket, None when the engine is not on one."""
        if self.engine_host.startswith("unix://"):
            path = self.engine_host[len("unix://") :]
            return path if path.startswith("/") else None
        return None


@dataclass(frozen=True)
class Features:
    """What a service's feature labels add to its container."""

    binds: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # over the service's own variables
    env_defaults: Mapping[str, str] = field(default_factory=dict)  # unless the service sets them
    device_requests: tuple[Mapping[str, Any], ...] = ()
    left_out: tuple[str, ...] = ()  # "<label>: <what> (<why>)", for the log


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in TRUTHY


def normalize_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`io.resin.*` labels under their `io.balena.*` name (every `resin` in the key becomes
    `balena`: io.resin.features.resin-api -> io.balena.features.balena-api); an `io.balena.*`
    label wins over its legacy twin, as in the reference."""
    legacy = {
        k.replace("resin", "balena"): v for k, v in labels.items() if k.startswith("io.resin.")
    }
    balena = {k: v for k, v in labels.items() if k.startswith("io.balena.")}
    other = {k: v for k, v in labels.items() if not k.startswith(("io.balena.", "io.resin."))}
    return {**other, **legacy, **balena}


def twins(values: Mapping[str, str]) -> dict[str, str]:
    """BALENA_<key> and its legacy RESIN_<key> for each value."""
    return {f"{prefix}_{k}": v for k, v in values.items() for prefix in ("BALENA", "RESIN")}


def features(
    labels: Mapping[str, str],
    host: HostFacts,
    *,
    api_endpoint: str,
    device_api_key: str,
    taken_targets: frozenset[str] = frozenset(),
) -> Features:
    """The mounts, variables and device requests `labels` (either spelling) ask for.
    `taken_targets`: container paths the service already mounts (a feature mount there is
    left out: the engine refuses two mounts on one path)."""
    wanted = [
        k[len(FEATURE_PREFIX) :]
        for k, v in normalize_labels(labels).items()
        if k.startswith(FEATURE_PREFIX) and truthy(v)
    ]
    binds: list[str] = []
    env: dict[str, str] = {}
    env_defaults: dict[str, str] = {}
    requests: list[Mapping[str, Any]] = []
    left_out: list[str] = []
    taken = set(taken_targets)

    def bind(label: str, source: str, target: str, mode: str = "") -> None:
        if target in taken:
            left_out.append(f"{FEATURE_PREFIX}{label}: {target} (already mounted by the service)")
            return
        taken.add(target)
        binds.append(f"{source}:{target}:{mode}" if mode else f"{source}:{target}")

    for name in sorted(wanted):
        label = FEATURE_PREFIX + name
        if name in _PATH_BINDS:
            for source, target, mode in _PATH_BINDS[name]:
                if source in host.existing_paths:
                    bind(name, source, target, mode)
                else:
                    left_out.append(f"{label}: {source} (not on the host)")
        elif name == "balena-socket":
            socket = host.engine_socket
            if socket is None:
                left_out.append(
                    f"{label}: engine socket (the engine at {host.engine_host!r} "
                    "is not on a unix socket)"
                )
                continue
            for target in ENGINE_SOCKET_TARGETS:
                bind(name, socket, target)
            env_defaults["DOCKER_HOST"] = f"unix://{CONTAINER_ENGINE_SOCKET}"
        elif name == "balena-api":
            env.update(twins({"API_KEY": device_api_key, "API_URL": api_endpoint}))
        elif name == "gpu":
            if host.gpu:
                requests.append(
                    {
                        "driver": "",
                        "count": 1,
                        "device_ids": [],
                        "capabilities": [["gpu"]],
                        "options": {},
                    }
                )
            else:
                left_out.append(f"{label}: GPU device request (no {GPU_HOOK} on the host)")
        elif name == "host-os.board-rev":
            if host.board_rev:
                env.update(twins({"HOST_OS_BOARD_REV": host.board_rev}))
                env.update(twins({"HOST_OS_BUILD": host.board_rev}))
            else:
                left_out.append(
                    f"{label}: HOST_OS_BOARD_REV (no BALENA_BOARD_REV in the host's os-release)"
                )
        elif name == "extra-firmware":
            bind(name, "extra-firmware", "/extra-firmware")  # a named volume, as the reference
        elif name not in KNOWN_FEATURES:
            left_out.append(f"{label}: unknown feature (nothing granted)")
    return Features(
        binds=tuple(binds),
        env=env,
        env_defaults=env_defaults,
        device_requests=tuple(requests),
        left_out=tuple(left_out),
    )


def bind_target(spec: str) -> str:
    """The container path of a `source:target[:mode]` or anonymous `target` bind/volume."""
    parts = spec.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


# --- reading the host (I/O, once at start) -----------------------------------------------------


def _os_release(root: Path) -> dict[str, str]:
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / rel).read_text()
        except (OSError, UnicodeDecodeError):
            continue
        out: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                out[key.strip()] = value
        return out
    return {}


def read_host_facts(root: Path, engine_host: str) -> HostFacts:
    """The host as the feature labels need it. `root`: where the agent sees the host's root
    file system (`/`, or the reference's ROOT_MOUNTPOINT when the agent runs in a container);
    the mounts name host paths, as the engine sees them."""
    existing = frozenset(p for p in HOST_PATHS if (root / p.lstrip("/")).exists())
    osr = _os_release(root)
    return HostFacts(
        existing_paths=existing,
        engine_host=engine_host,
        board_rev=osr.get("BALENA_BOARD_REV") or osr.get("RESIN_BOARD_REV") or None,
        os_version=osr.get("PRETTY_NAME", ""),
        os_slug=osr.get("ID", ""),
        os_semver=osr.get("VERSION", ""),
        gpu=shutil.which(GPU_HOOK) is not None,
    )
