"""The `composition` of a target service: compose keys parsed and checked into a frozen
`Composition`, normalized so equal configs compare equal. Anything accepted here can be turned
into a container spec (`engine/compose.py`); anything else raises `TargetStateError` naming the
service and the key, which rejects the app alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent.errors import TargetStateError
from agent.model.checks import (
    _as_list,
    _bool,
    _is_int,
    _list,
    _opt_str,
    _str,
    _strs,
)
from agent.model.compose_host import (
    host_options,
    ignored_security_opts,
    network_endpoints,
    network_mode,
    snake_case_keys,
)
from agent.model.compose_options import Endpoint
from agent.model.compose_values import (
    RESERVED_MOUNTS,
    parse_duration_value,
    parse_port,
    parse_volume,
    tmpfs_target,
)

RESTART_RE = re.compile(r"no|always|unless-stopped|on-failure(?::[0-9]{1,9})?")
MAX_RETRIES = 2**31 - 1
DEPENDS_CONDITIONS = frozenset(
    {"service_started", "service_healthy", "service_completed_successfully"}
)

# a Composition field counted in the config hash only when it differs from its default
IF_SET = {"hash": "if_set"}
SPECIAL_NETWORK_MODES = frozenset({"host", "none", "bridge"})

# compose keys we understand; anything else is ignored with a warning (as the reference does)
KNOWN_COMPOSE_KEYS = frozenset(
    {
        "mem_reservation",
        "cpu_quota",
        "cpus",
        "oom_score_adj",
        "dns_search",
        "dns_opt",
        "mac_address",
        "pids_limit",
        "userns_mode",
        "cgroup_parent",
        "command",
        "entrypoint",
        "ports",
        "expose",
        "volumes",
        "restart",
        "network_mode",
        "networks",
        "privileged",
        "cap_add",
        "cap_drop",
        "devices",
        "depends_on",
        "healthcheck",
        "init",
        "user",
        "working_dir",
        "hostname",
        "stop_signal",
        "stop_grace_period",
        "tty",
        "environment",
        "labels",
        "image",
        "running",
        "tmpfs",
        "extra_hosts",
        "dns",
        "read_only",
        "shm_size",
        "mem_limit",
        "sysctls",
        "security_opt",
        "group_add",
        "ulimits",
        "pid",
        "ipc",
        "domainname",
        "oom_kill_disable",
        "cpu_shares",
        "cpuset",
    }
)


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0


@dataclass(frozen=True)
class Composition:
    """The container-shaping part of a service, normalized so equal configs compare equal."""

    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    restart: str = "always"
    network_mode: str | None = None
    networks: tuple[str, ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    depends_on: tuple[tuple[str, str], ...] = ()  # (service, condition), sorted
    healthcheck: Healthcheck | None = None
    init: bool | None = None
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    stop_signal: str | None = None
    stop_grace_period_s: float | None = None
    tty: bool = False
    extra_hosts: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    read_only: bool = False
    dns: tuple[str, ...] = ()
    # keys added later count in the config hash only when set: hashes of containers made
    # before them (by an earlier agent) stay what they were
    shm_size: int | None = field(default=None, metadata=IF_SET)
    mem_limit: int | None = field(default=None, metadata=IF_SET)
    mem_reservation: int | None = field(default=None, metadata=IF_SET)
    ulimits: tuple[tuple[str, int, int], ...] = field(default=(), metadata=IF_SET)
    sysctls: tuple[tuple[str, str], ...] = field(default=(), metadata=IF_SET)
    pid: str | None = field(default=None, metadata=IF_SET)
    ipc: str | None = field(default=None, metadata=IF_SET)
    security_opt: tuple[str, ...] = field(default=(), metadata=IF_SET)
    group_add: tuple[str, ...] = field(default=(), metadata=IF_SET)
    cpuset: str | None = field(default=None, metadata=IF_SET)
    cpu_shares: int | None = field(default=None, metadata=IF_SET)
    cpu_quota: int | None = field(default=None, metadata=IF_SET)
    nano_cpus: int | None = field(default=None, metadata=IF_SET)
    domainname: str | None = field(default=None, metadata=IF_SET)
    oom_kill_disable: bool = field(default=False, metadata=IF_SET)
    oom_score_adj: int | None = field(default=None, metadata=IF_SET)
    expose: tuple[tuple[int, str], ...] = field(default=(), metadata=IF_SET)
    dns_search: tuple[str, ...] = field(default=(), metadata=IF_SET)
    dns_opt: tuple[str, ...] = field(default=(), metadata=IF_SET)
    mac_address: str | None = field(default=None, metadata=IF_SET)
    pids_limit: int | None = field(default=None, metadata=IF_SET)
    userns_mode: str | None = field(default=None, metadata=IF_SET)
    cgroup_parent: str | None = field(default=None, metadata=IF_SET)
    endpoints: tuple[tuple[str, Endpoint], ...] = field(default=(), metadata=IF_SET)
    # compose keys (and host bind mounts, as `volumes: <spec>`) left out, as the reference
    # does; logged as `compose_keys_ignored`. They don't shape the container: not hashed.
    ignored_keys: tuple[str, ...] = field(default=(), metadata={"hash": False})

    def named_volumes(self) -> tuple[str, ...]:
        """Volume names referenced by `name:/path[:mode]` entries (not bind mounts)."""
        names = []
        for spec in self.volumes:
            source = spec.split(":", 1)[0]
            if ":" in spec and not source.startswith(("/", ".", "~")):
                names.append(source)
        return tuple(names)


def parse_composition(where: str, raw: dict[str, Any]) -> Composition:
    raw = snake_case_keys(raw, KNOWN_COMPOSE_KEYS)
    restart = raw.get("restart")
    restart = "always" if restart is None else restart
    if isinstance(restart, str):
        restart = restart.strip().lower()  # as the reference reads it
    if not isinstance(restart, str) or not RESTART_RE.fullmatch(restart):
        raise TargetStateError(f"{where}: restart: unknown restart policy {restart!r}")
    depends = raw.get("depends_on", [])
    if isinstance(depends, list):
        dep_pairs = [(_str(d, f"{where}: depends_on"), "service_started") for d in depends]
    elif isinstance(depends, dict):
        dep_pairs = []
        for dep, spec in depends.items():
            cond = spec.get("condition", "service_started") if isinstance(spec, dict) else None
            if not isinstance(cond, str) or cond not in DEPENDS_CONDITIONS:
                raise TargetStateError(f"{where}: depends_on {dep}: bad condition {cond!r}")
            dep_pairs.append((str(dep), str(cond)))
    else:
        raise TargetStateError(f"{where}: depends_on must be a list or an object")
    networks = raw.get("networks", [])
    endpoints, ignored_endpoint_keys = network_endpoints(networks, where)
    if isinstance(networks, dict):
        networks = list(networks)
    mode, ignored_mode = network_mode(raw.get("network_mode"), where)
    working_dir = _opt_str(raw.get("working_dir"), f"{where}: working_dir")
    if working_dir is not None and not working_dir.startswith("/"):
        raise TargetStateError(f"{where}: working_dir: {working_dir!r} is not an absolute path")
    volumes, volume_tmpfs, ignored_binds = _volumes(raw.get("volumes", []), where)
    tmpfs = _strs(_as_list(raw.get("tmpfs", [])), f"{where}: tmpfs") + volume_tmpfs
    _check_mount_points(volumes, tmpfs, where)
    ports = raw.get("ports", [])
    return Composition(
        command=_cmd(raw.get("command"), f"{where}: command"),
        entrypoint=_cmd(raw.get("entrypoint"), f"{where}: entrypoint"),
        ports=tuple(_port(p, where) for p in _list(ports, f"{where}: ports")),
        volumes=volumes,
        restart=restart,
        network_mode=mode,
        networks=tuple(sorted(_strs(networks, f"{where}: networks"))),
        privileged=_bool(raw.get("privileged", False), f"{where}: privileged"),
        cap_add=tuple(sorted(_strs(raw.get("cap_add", []), f"{where}: cap_add"))),
        cap_drop=tuple(sorted(_strs(raw.get("cap_drop", []), f"{where}: cap_drop"))),
        devices=_strs(raw.get("devices", []), f"{where}: devices"),
        depends_on=tuple(sorted(dep_pairs)),
        healthcheck=_healthcheck(raw.get("healthcheck"), where),
        init=None if raw.get("init") is None else _bool(raw["init"], f"{where}: init"),
        user=_opt_str(raw.get("user"), f"{where}: user"),
        working_dir=working_dir,
        hostname=_opt_str(raw.get("hostname"), f"{where}: hostname"),
        stop_signal=_opt_str(raw.get("stop_signal"), f"{where}: stop_signal"),
        stop_grace_period_s=(
            None
            if raw.get("stop_grace_period") is None
            else parse_duration(raw["stop_grace_period"], f"{where}: stop_grace_period")
        ),
        tty=_bool(raw.get("tty", False), f"{where}: tty"),
        # `host=ip` (compose-go's form) as the engine wants it, `host:ip`, as the reference does
        extra_hosts=tuple(
            h.replace("=", ":", 1)
            for h in _strs(raw.get("extra_hosts", []), f"{where}: extra_hosts")
        ),
        tmpfs=tmpfs,
        read_only=_bool(raw.get("read_only", False), f"{where}: read_only"),
        dns=_strs(_as_list(raw.get("dns", [])), f"{where}: dns"),
        **host_options(raw, mode, where),
        endpoints=endpoints,
        ignored_keys=tuple(
            sorted(k for k in raw if k not in KNOWN_COMPOSE_KEYS)
            + [f"volumes: {spec}" for spec in ignored_binds]
            + ignored_mode
            + ignored_endpoint_keys
            + ignored_security_opts(raw, where)
        ),
    )


def _volumes(raw: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """The volume specs to mount, the tmpfs mounts given in long syntax, and the host bind
    mounts left out (as the reference does)."""
    kept: list[str] = []
    tmpfs: list[str] = []
    ignored: list[str] = []
    for value in _list(raw, f"{where}: volumes"):
        try:
            entry = parse_volume(value)
        except ValueError as exc:
            raise TargetStateError(f"{where}: volumes: {exc}") from None
        if entry.spec is not None:
            kept.append(entry.spec)
        if entry.tmpfs is not None:
            tmpfs.append(entry.tmpfs)
        if entry.ignored is not None:
            ignored.append(entry.ignored)
    return tuple(kept), tuple(tmpfs), ignored


def _check_mount_points(volumes: tuple[str, ...], tmpfs: tuple[str, ...], where: str) -> None:
    """The engine refuses two mounts on one path, the agent's lock dirs included."""
    seen = {path: "the agent's update-lock mount" for path in RESERVED_MOUNTS}
    targets: list[tuple[str, str]] = []
    for spec in volumes:
        target = parse_volume(spec).target
        assert target is not None
        targets.append(("volumes", target))
    for spec in tmpfs:
        try:
            targets.append(("tmpfs", tmpfs_target(spec)))
        except ValueError as exc:
            raise TargetStateError(f"{where}: tmpfs: {exc}") from None
    for key, path in targets:
        if path in seen:
            raise TargetStateError(f"{where}: {key}: {path} is already used by {seen[path]}")
        seen[path] = key


def _healthcheck(raw: Any, where: str) -> Healthcheck | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TargetStateError(f"{where}: healthcheck must be an object")
    if raw.get("disable"):
        return Healthcheck(test=("NONE",))
    test = raw.get("test")
    if isinstance(test, str):
        test_t: tuple[str, ...] = ("CMD-SHELL", test)
    elif isinstance(test, list) and test and all(isinstance(t, str) for t in test):
        test_t = tuple(test)
        if test_t[0] not in ("NONE", "CMD", "CMD-SHELL") or (
            test_t[0] != "NONE" and len(test_t) < 2
        ):
            raise TargetStateError(
                f"{where}: healthcheck.test: a list must be [NONE] or [CMD|CMD-SHELL, ...]"
            )
    else:
        raise TargetStateError(f"{where}: healthcheck.test must be a string or a list")
    retries = raw.get("retries")
    if retries is None or not _is_int(retries):
        retries = 3
    elif not 0 <= retries <= MAX_RETRIES:
        raise TargetStateError(f"{where}: healthcheck.retries: {retries} is out of range")
    return Healthcheck(
        test=test_t,
        interval_s=_probe_duration(raw.get("interval", "30s"), f"{where}: healthcheck.interval"),
        timeout_s=_probe_duration(raw.get("timeout", "30s"), f"{where}: healthcheck.timeout"),
        retries=retries,
        start_period_s=_probe_duration(
            raw.get("start_period", "0s"), f"{where}: healthcheck.start_period"
        ),
    )


def _probe_duration(value: Any, where: str) -> float:
    seconds = parse_duration(value, where)
    if 0 < seconds < 0.001:  # the engine's minimum
        raise TargetStateError(f"{where}: {value!r} is below 1ms (use 0 for the default)")
    return seconds


def parse_duration(value: Any, where: str) -> float:
    """Compose durations: `1m30s`, `500ms`, `10s`, or a bare number of seconds; finite and
    non-negative (see `compose_values.parse_duration_value`)."""
    try:
        return parse_duration_value(value)
    except ValueError as exc:
        raise TargetStateError(f"{where}: {exc}") from None


# --- value readers ---------------------------------------------------------------------------


def _cmd(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ("/bin/sh", "-c", value)
    return _strs(value, where)


def _port(value: Any, where: str) -> str:
    try:
        parse_port(value)
    except ValueError as exc:
        raise TargetStateError(f"{where}: ports: {exc}") from None
    return str(value)
