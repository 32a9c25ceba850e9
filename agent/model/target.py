"""The v3 target state: parsing and validation into frozen dataclasses.

The cloud sends `{deviceUuid: {name, config, apps: {appUuid: {...}}}}`. A structurally broken
document raises `TargetStateError`; a broken *app* inside a sound document is kept as an
`AppSpec` with a `rejection` reason, so the other apps are still applied and the running ones
are never touched because of a neighbour's mistake.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from agent.errors import TargetStateError
from agent.model.compose_values import (
    RESERVED_MOUNTS,
    parse_duration_value,
    parse_port,
    parse_volume,
    tmpfs_target,
)

SERVICE_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # used with fullmatch
# engine object names are `{appId}_{name}` (volumes) or contain the release uuid (containers)
ENGINE_NAME_PART_RE = re.compile(r"[a-zA-Z0-9_.-]+")
RESTART_RE = re.compile(r"no|always|unless-stopped|on-failure(?::[0-9]{1,9})?")
MAX_RETRIES = 2**31 - 1
DEPENDS_CONDITIONS = frozenset(
    {"service_started", "service_healthy", "service_completed_successfully"}
)

# compose keys we understand; anything else is ignored with a warning (as the reference does)
KNOWN_COMPOSE_KEYS = frozenset(
    {
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


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    id: int
    image_id: int
    image: str
    environment: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    running: bool = True
    composition: Composition = field(default_factory=Composition)

    @property
    def depends_on(self) -> dict[str, str]:
        return dict(self.composition.depends_on)

    @property
    def update_strategy(self) -> str:
        value = self.labels.get("io.balena.update.strategy") or self.labels.get(
            "io.resin.update.strategy"
        )
        return value or "download-then-kill"

    @property
    def handover_timeout_s(self) -> float:
        raw = self.labels.get("io.balena.update.handover-timeout") or self.labels.get(
            "io.resin.update.handover-timeout"
        )
        try:
            seconds = float(raw) / 1000.0 if raw else 60.0
        except ValueError:
            return 60.0
        return max(0.0, seconds) if math.isfinite(seconds) else 60.0

    def config_hash(self) -> str:
        return self._config_hash

    @cached_property
    def _config_hash(self) -> str:
        """A digest of everything that shapes the container (image, env, labels, composition).

        Release ids are deliberately left out: a service whose container would be identical is
        carried over to a new release by a rename, not recreated.
        """
        payload = {
            "image": self.image,
            "environment": dict(sorted(self.environment.items())),
            "labels": dict(sorted(self.labels.items())),
            "composition": _jsonable(self.composition),
        }
        raw = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    driver: str = "local"
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    driver: str = "bridge"
    internal: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleaseSpec:
    uuid: str
    id: int
    services: Mapping[str, ServiceSpec]
    volumes: Mapping[str, VolumeSpec] = field(default_factory=dict)
    networks: Mapping[str, NetworkSpec] = field(default_factory=dict)

    def images(self) -> frozenset[str]:
        return frozenset(s.image for s in self.services.values())


@dataclass(frozen=True)
class AppSpec:
    uuid: str
    id: int
    name: str
    app_class: str = "fleet"
    is_host: bool = False
    release: ReleaseSpec | None = None
    release_uuid: str | None = None  # known even when the release could not be parsed
    rejection: str | None = None  # why this app cannot run; its current containers stay as is

    @property
    def rejected(self) -> bool:
        return self.rejection is not None


@dataclass(frozen=True)
class TargetState:
    device_uuid: str
    name: str
    config: Mapping[str, str]
    apps: Mapping[str, AppSpec]

    def app_by_id(self, app_id: int) -> AppSpec | None:
        return next((a for a in self.apps.values() if a.id == app_id), None)


def parse_target(body: Any, device_uuid: str) -> TargetState:
    """Parse a v3 target state document for `device_uuid`."""
    if not isinstance(body, dict):
        raise TargetStateError(f"target state must be a JSON object, got {type(body).__name__}")
    if device_uuid not in body:
        keys = ", ".join(sorted(map(str, body))[:3]) or "nothing"
        raise TargetStateError(f"target state has no entry for device {device_uuid} (has {keys})")
    device = body[device_uuid]
    if not isinstance(device, dict):
        raise TargetStateError("device entry of the target state must be an object")
    config = device.get("config", {})
    if not isinstance(config, dict):
        raise TargetStateError("target 'config' must be an object of strings")
    apps_raw = device.get("apps", {})
    if not isinstance(apps_raw, dict):
        raise TargetStateError("target 'apps' must be an object keyed by app uuid")
    apps = _unique_ids({str(uuid): _parse_app(str(uuid), raw) for uuid, raw in apps_raw.items()})
    return TargetState(
        device_uuid=device_uuid,
        name=str(device.get("name", "")),
        config={str(k): _scalar_str(v) for k, v in config.items()},
        apps=apps,
    )


def _unique_ids(apps: dict[str, AppSpec]) -> dict[str, AppSpec]:
    """Apps sharing an id would share engine objects (`{appId}_default`...): all rejected."""
    by_id: dict[int, list[str]] = {}
    for uuid, app in apps.items():
        if app.id > 0:
            by_id.setdefault(app.id, []).append(uuid)
    for app_id, uuids in by_id.items():
        if len(uuids) > 1:
            for uuid in uuids:
                reason = f"app {apps[uuid].name}: app id {app_id} is shared by apps {sorted(uuids)}"
                apps[uuid] = replace(apps[uuid], release=None, rejection=reason)
    return apps


def _parse_app(uuid: str, raw: Any) -> AppSpec:
    if not isinstance(raw, dict):
        return AppSpec(uuid=uuid, id=0, name=uuid, rejection="app entry is not an object")
    name = str(raw.get("name", uuid))
    app_id = raw.get("id")
    releases = raw.get("releases", {})
    release_uuid = next(iter(releases), None) if isinstance(releases, dict) else None
    base = dict(
        uuid=uuid,
        name=name,
        app_class=str(raw.get("class", "fleet")),
        is_host=bool(raw.get("is_host", False)),
        release_uuid=release_uuid,
    )
    try:
        if not _is_positive_int(app_id):
            raise TargetStateError(f"app {name}: 'id' must be a positive integer")
        if not isinstance(releases, dict):
            raise TargetStateError(f"app {name}: 'releases' must be an object")
        if len(releases) > 1:
            raise TargetStateError(f"app {name}: at most one release per app, got {len(releases)}")
        release = None
        if release_uuid is not None:
            release = _parse_release(name, str(release_uuid), releases[release_uuid])
        return AppSpec(id=int(app_id), release=release, **base)  # type: ignore[arg-type]
    except TargetStateError as exc:
        safe_id = app_id if _is_positive_int(app_id) else 0
        return AppSpec(id=safe_id, rejection=str(exc), **base)  # type: ignore[arg-type]


def _parse_release(app: str, uuid: str, raw: Any) -> ReleaseSpec:
    if not isinstance(raw, dict):
        raise TargetStateError(f"app {app}: release {uuid} is not an object")
    if not ENGINE_NAME_PART_RE.fullmatch(uuid):
        raise TargetStateError(f"app {app}: release {uuid!r}: invalid release uuid")
    if not _is_positive_int(raw.get("id")):
        raise TargetStateError(f"app {app}: release {uuid} has no positive integer 'id'")
    services_raw = raw.get("services", {})
    if not isinstance(services_raw, dict):
        raise TargetStateError(f"app {app}: 'services' must be an object keyed by service name")
    services = {str(n): _parse_service(app, str(n), s) for n, s in sorted(services_raw.items())}
    volumes = {str(n): _parse_volume(app, str(n), v) for n, v in _obj(raw, "volumes", app).items()}
    networks = {
        str(n): _parse_network(app, str(n), v) for n, v in _obj(raw, "networks", app).items()
    }
    for svc in services.values():
        for dep, _cond in svc.composition.depends_on:
            if dep not in services:
                raise TargetStateError(
                    f"app {app}: service {svc.name} depends on unknown service {dep}"
                )
        for vol in svc.composition.named_volumes():
            if vol not in volumes:
                raise TargetStateError(
                    f"app {app}: service {svc.name} mounts undeclared volume {vol}"
                )
        for net in svc.composition.networks:
            if net not in networks:
                raise TargetStateError(
                    f"app {app}: service {svc.name} joins undeclared network {net}"
                )
    _check_dependency_cycles(app, services)
    return ReleaseSpec(
        uuid=uuid, id=int(raw["id"]), services=services, volumes=volumes, networks=networks
    )


def _parse_service(app: str, name: str, raw: Any) -> ServiceSpec:
    where = f"app {app}: service {name}"
    if not SERVICE_NAME_RE.fullmatch(name):
        raise TargetStateError(f"app {app}: service {name!r}: invalid service name")
    if not isinstance(raw, dict):
        raise TargetStateError(f"{where}: not an object")
    image = raw.get("image")
    if (
        not isinstance(image, str)
        or not image.strip()
        or not image.strip().isascii()
        or not image.strip().isprintable()
        or any(c.isspace() for c in image.strip())
    ):
        raise TargetStateError(f"{where}: 'image' must be a non-empty image reference")
    for key in ("id", "image_id"):
        if key in raw and not _is_positive_int(raw[key]):
            raise TargetStateError(f"{where}: '{key}' must be a positive integer")
    running = raw.get("running", True)
    if not isinstance(running, bool):
        raise TargetStateError(f"{where}: 'running' must be true or false")
    comp_raw = raw.get("composition", {})
    if not isinstance(comp_raw, dict):
        raise TargetStateError(f"{where}: 'composition' must be an object")
    environment = _str_map(raw.get("environment", {}), f"{where}: environment")
    labels = _str_map(raw.get("labels", {}), f"{where}: labels")
    return ServiceSpec(
        name=name,
        id=int(raw.get("id", 0)),
        image_id=int(raw.get("image_id", 0)),
        image=image.strip(),
        environment=environment,
        labels=labels,
        running=running,
        composition=_parse_composition(where, comp_raw),
    )


def _parse_composition(where: str, raw: dict[str, Any]) -> Composition:
    restart = raw.get("restart")
    restart = "always" if restart is None else restart
    if not isinstance(restart, str) or not RESTART_RE.fullmatch(restart):
        raise TargetStateError(f"{where}: restart: unknown restart policy {restart!r}")
    depends = raw.get("depends_on", [])
    if isinstance(depends, list):
        dep_pairs = [(_str(d, f"{where}: depends_on"), "service_started") for d in depends]
    elif isinstance(depends, dict):
        dep_pairs = []
        for dep, spec in depends.items():
            cond = spec.get("condition", "service_started") if isinstance(spec, dict) else None
            if cond not in DEPENDS_CONDITIONS:
                raise TargetStateError(f"{where}: depends_on {dep}: bad condition {cond!r}")
            dep_pairs.append((str(dep), str(cond)))
    else:
        raise TargetStateError(f"{where}: depends_on must be a list or an object")
    networks = raw.get("networks", [])
    if isinstance(networks, dict):
        networks = list(networks)
    network_mode = raw.get("network_mode")
    if network_mode is not None and not isinstance(network_mode, str):
        raise TargetStateError(f"{where}: network_mode must be a string")
    working_dir = _opt_str(raw.get("working_dir"), f"{where}: working_dir")
    if working_dir is not None and not working_dir.startswith("/"):
        raise TargetStateError(f"{where}: working_dir: {working_dir!r} is not an absolute path")
    volumes, ignored_binds = _volumes(raw.get("volumes", []), where)
    tmpfs = _strs(_as_list(raw.get("tmpfs", [])), f"{where}: tmpfs")
    _check_mount_points(volumes, tmpfs, where)
    ports = raw.get("ports", [])
    return Composition(
        command=_cmd(raw.get("command"), f"{where}: command"),
        entrypoint=_cmd(raw.get("entrypoint"), f"{where}: entrypoint"),
        ports=tuple(_port(p, where) for p in _list(ports, f"{where}: ports")),
        volumes=volumes,
        restart=restart,
        network_mode=network_mode,
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
        extra_hosts=_strs(raw.get("extra_hosts", []), f"{where}: extra_hosts"),
        tmpfs=tmpfs,
        read_only=_bool(raw.get("read_only", False), f"{where}: read_only"),
        dns=_strs(_as_list(raw.get("dns", [])), f"{where}: dns"),
        ignored_keys=tuple(
            sorted(k for k in raw if k not in KNOWN_COMPOSE_KEYS)
            + [f"volumes: {spec}" for spec in ignored_binds]
        ),
    )


def _volumes(raw: Any, where: str) -> tuple[tuple[str, ...], list[str]]:
    """The volume specs to mount, and the host bind mounts left out (as the reference does)."""
    kept: list[str] = []
    ignored: list[str] = []
    for value in _list(raw, f"{where}: volumes"):
        try:
            entry = parse_volume(value)
        except ValueError as exc:
            raise TargetStateError(f"{where}: volumes: {exc}") from None
        if entry.spec is not None:
            kept.append(entry.spec)
        if entry.ignored is not None:
            ignored.append(entry.ignored)
    return tuple(kept), ignored


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


def _parse_volume(app: str, name: str, raw: Any) -> VolumeSpec:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise TargetStateError(f"app {app}: volume {name} must be an object")
    if not ENGINE_NAME_PART_RE.fullmatch(name):
        raise TargetStateError(
            f"app {app}: volume {name!r}: invalid name (letters, digits, '_', '.', '-' only)"
        )
    return VolumeSpec(
        name=name,
        driver=str(raw.get("driver", "local")),
        driver_opts=_str_map(raw.get("driver_opts", {}), f"app {app}: volume {name}"),
        labels=_str_map(raw.get("labels", {}), f"app {app}: volume {name}"),
    )


def _parse_network(app: str, name: str, raw: Any) -> NetworkSpec:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise TargetStateError(f"app {app}: network {name} must be an object")
    return NetworkSpec(
        name=name,
        driver=str(raw.get("driver", "bridge")),
        internal=bool(raw.get("internal", False)),
        labels=_str_map(raw.get("labels", {}), f"app {app}: network {name}"),
    )


def _check_dependency_cycles(app: str, services: Mapping[str, ServiceSpec]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*path, name))
            raise TargetStateError(f"app {app}: depends_on cycle {cycle}")
        state[name] = 1
        for dep, _ in services[name].composition.depends_on:
            visit(dep, (*path, name))
        state[name] = 2

    for name in services:
        visit(name, ())


# --- small validators -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _scalar_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TargetStateError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TargetStateError(f"{where}: expected true or false")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TargetStateError(f"{where}: expected a list")
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_str(v, where) for v in _list(value, where))


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


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TargetStateError(f"{where}: expected an object of strings")
    out = {}
    for key, val in value.items():
        if val is None or isinstance(val, dict | list):
            raise TargetStateError(f"{where}: {key} must be a string")
        out[str(key)] = _scalar_str(val)
    return out


def _obj(raw: dict[str, Any], key: str, app: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise TargetStateError(f"app {app}: '{key}' must be an object")
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {
            k: _jsonable(getattr(value, k))
            for k, f in value.__dataclass_fields__.items()
            if f.metadata.get("hash", True)
        }
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def service_networks(service: ServiceSpec) -> tuple[str, ...]:
    """The app networks (logical names) a service joins: its `networks`, else `default` unless
    its network_mode is host/none/bridge/service:/container:."""
    comp = service.composition
    if comp.network_mode is not None:
        return ()
    return comp.networks or ("default",)
