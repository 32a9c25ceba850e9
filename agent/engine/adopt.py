"""Takeover: judging a container another supervisor created (balena's, which stamps no config
hash of ours) against the container the agent would create for the target service.

Pure: fed with the engine's inspect of the container and of its image (captured by
`engine/docker.py`), and with the `ContainerSpec` the agent would create. As the reference does
(`Service.isEqualConfig`), what the engine fills in from the image (environment, labels,
command, entrypoint, working dir, user, stop signal, healthcheck, exposed ports) counts as
asked for, list-like settings compare as sets, and the supervisors' own bookkeeping labels and
the device-name variables are left out. Equal → the container is adopted as it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.engine.compose import ContainerSpec, DeviceContext, container_spec, default_env
from agent.model import AppSpec, CurrentState, ServiceSpec, TargetState
from agent.model.current import (
    SUPERVISOR_LABELS,
    EngineConfig,
    app_network_name,
    network_engine_name,
)
from agent.model.target import service_networks

# labels a supervisor writes for its own bookkeeping (ids live in the container's name too)
BOOKKEEPING_LABELS = SUPERVISOR_LABELS | {"io.balena.architecture"}
# variables that differ between supervisors without changing what the service does: the
# version of the supervisor (ours only) and the device name at creation (the reference omits
# it from its comparison too)
IGNORED_ENV = frozenset(
    {
        "BALENA_SUPERVISOR_VERSION",
        "RESIN_SUPERVISOR_VERSION",
        "BALENA_DEVICE_NAME_AT_INIT",
        "RESIN_DEVICE_NAME_AT_INIT",
    }
)


@dataclass(frozen=True)
class Judgement:
    """What the agent made of a container another supervisor created."""

    container: str  # its name
    app_uuid: str
    service: str
    differences: tuple[str, ...]  # empty: adopted

    @property
    def adopted(self) -> bool:
        return not self.differences


def adopt(
    current: CurrentState, target: TargetState, device: DeviceContext
) -> tuple[CurrentState, tuple[Judgement, ...]]:
    """`current` with every container another supervisor made, whose configuration equals
    what the agent would create for its target service, given that service's config hash:
    from then on the planner sees it as one of ours, keeps it running and, when its release
    differs, only renames it. Any other container keeps no hash, so the planner replaces it."""
    judged: list[Judgement] = []
    containers = []
    for c in current.containers:
        if c.config_hash is not None or c.engine_config is None:
            containers.append(c)
            continue
        app = target.apps.get(c.app_uuid)
        release = app.release if app is not None else None
        service = release.services.get(c.service_name) if release is not None else None
        image = current.image_for(service.image) if service is not None else None
        if app is None or release is None or service is None or image is None:
            containers.append(c)  # not (or not yet) judged against a target service
            continue
        networks = frozenset(n.name for n in current.networks)
        spec = spec_on_engine(app, service, device, networks)
        injected = default_env(app, service, device).keys()
        found = tuple(differences(spec, image.id, c.engine_config, injected))
        judged.append(Judgement(c.name, c.app_uuid, c.service_name, found))
        containers.append(c if found else replace(c, config_hash=service.config_hash()))
    return replace(current, containers=tuple(containers)), tuple(judged)


def spec_on_engine(
    app: AppSpec, service: ServiceSpec, device: DeviceContext, networks: Collection[str]
) -> ContainerSpec:
    """The container the agent creates for `service`, on the engine's networks as they are
    named there (`networks`: balena's `{appUuid}_{name}` ones are joined, not duplicated)."""
    assert app.release is not None
    spec = container_spec(app, service, device, app.release.uuid, app.release.id)
    names = {
        network_engine_name(app.id, n): app_network_name(app.id, app.uuid, n, networks)
        for n in service_networks(service)
    }
    if all(k == v for k, v in names.items()):
        return spec
    mode = str(spec.host_config.get("network_mode") or "")
    return replace(
        spec,
        host_config={**spec.host_config, "network_mode": names.get(mode, mode)},
        primary_network=names.get(spec.primary_network or "", spec.primary_network),
        extra_networks=tuple(names.get(n, n) for n in spec.extra_networks),
        endpoints={names.get(k, k): v for k, v in spec.endpoints.items()},
    )


def differences(
    spec: ContainerSpec,
    image_id: str,
    actual: EngineConfig,
    injected: Collection[str] = frozenset(),
) -> list[str]:
    """The settings in which the container differs from `spec` (empty: adopt it as it is).
    `image_id` is the id of the target's image on the engine; `injected` the variables the
    supervisor adds to every container (tolerated when missing)."""
    config: Mapping[str, Any] = actual.container.get("Config") or {}
    host: Mapping[str, Any] = actual.container.get("HostConfig") or {}
    image: Mapping[str, Any] = actual.image.get("Config") or {}
    want: Mapping[str, Any] = spec.create
    want_host: Mapping[str, Any] = spec.host_config
    found: list[str] = []

    def check(name: str, expected: Any, got: Any) -> None:
        if expected != got:
            found.append(name)

    check("image", image_id, actual.container.get("Image"))
    have_env = _env(_env_dict(config.get("Env")))
    want_env = _env({**_env_dict(image.get("Env")), **dict(want.get("environment") or {})})
    # a variable the supervisor injects that the container lacks: the other supervisor's
    # version did not inject it yet (APP_UUID, DEVICE_ARCH...), which changes nothing it ran
    want_env = {k: v for k, v in want_env.items() if k in have_env or k not in injected}
    check("environment", want_env, have_env)
    check(
        "labels",
        _labels({**dict(image.get("Labels") or {}), **dict(want.get("labels") or {})}),
        _labels(config.get("Labels") or {}),
    )
    entrypoint = want.get("entrypoint")
    check(
        "entrypoint",
        _seq(entrypoint if entrypoint is not None else image.get("Entrypoint")),
        _seq(config.get("Entrypoint")),
    )
    command = want.get("command")
    if command is None and entrypoint is None:
        command = image.get("Cmd")
    check("command", _seq(command), _seq(config.get("Cmd")))
    for key, cfg_key in (("working_dir", "WorkingDir"), ("user", "User")):
        check(key, want.get(key) or image.get(cfg_key) or "", config.get(cfg_key) or "")
    check(
        "stop_signal",
        want.get("stop_signal") or image.get("StopSignal") or "SIGTERM",
        config.get("StopSignal") or "SIGTERM",
    )
    check("stop_timeout", want.get("stop_timeout", 10), config.get("StopTimeout") or 10)
    if want.get("tty"):  # (the reference gives a TTY by default: having one is no difference)
        check("tty", True, bool(config.get("Tty")))
    check("domainname", want.get("domainname") or "", config.get("Domainname") or "")
    if want.get("hostname"):
        check("hostname", want["hostname"], config.get("Hostname"))
    check(
        "healthcheck",
        _healthcheck(want.get("healthcheck"), image.get("Healthcheck")),
        _healthcheck(None, config.get("Healthcheck")),
    )
    check(
        "expose",
        _exposed(want.get("ports") or ()) | set((image.get("ExposedPorts") or {}).keys()),
        set((config.get("ExposedPorts") or {}).keys()),
    )
    _check_host(want_host, host, check)
    _check_networks(spec, actual.container, check)
    return found


def _check_host(
    want: Mapping[str, Any], host: Mapping[str, Any], check: Callable[[str, Any, Any], None]
) -> None:
    check("volumes", set(want.get("binds") or ()), set(host.get("Binds") or ()))
    check("ports", _bindings_spec(want.get("port_bindings")), _bindings_engine(host))
    check("restart", _restart(want.get("restart_policy")), _restart(host.get("RestartPolicy")))
    check("privileged", bool(want.get("privileged")), bool(host.get("Privileged")))
    check("cap_add", _caps(want.get("cap_add")), _caps(host.get("CapAdd")))
    check("cap_drop", _caps(want.get("cap_drop")), _caps(host.get("CapDrop")))
    check("devices", _devices_spec(want.get("devices")), _devices_engine(host.get("Devices")))
    check("init", bool(want.get("init")), bool(host.get("Init")))
    check("extra_hosts", set(want.get("extra_hosts") or ()), set(host.get("ExtraHosts") or ()))
    check(
        "tmpfs",
        {t.split(":", 1)[0] for t in want.get("tmpfs") or ()},
        set((host.get("Tmpfs") or {}).keys()),
    )
    check("read_only", bool(want.get("read_only")), bool(host.get("ReadonlyRootfs")))
    check("dns", list(want.get("dns") or ()), list(host.get("Dns") or ()))
    check("dns_search", list(want.get("dns_search") or ()), list(host.get("DnsSearch") or ()))
    check("dns_opt", set(want.get("dns_opt") or ()), set(host.get("DnsOptions") or ()))
    check("gpu", len(want.get("device_requests") or ()), len(host.get("DeviceRequests") or ()))
    # resource and kernel settings: absent in the spec means the engine's empty value
    for key, engine_key in _HOST_NUMBERS.items():
        check(key, int(want.get(key) or 0), int(host.get(engine_key) or 0))
    for key, engine_key in _HOST_STRINGS.items():
        check(key, want.get(key) or "", host.get(engine_key) or "")
    check("oom_kill_disable", bool(want.get("oom_kill_disable")), bool(host.get("OomKillDisable")))
    check("sysctls", dict(want.get("sysctls") or {}), dict(host.get("Sysctls") or {}))
    check("security_opt", set(want.get("security_opt") or ()), set(host.get("SecurityOpt") or ()))
    check("group_add", set(want.get("group_add") or ()), set(host.get("GroupAdd") or ()))
    check("ulimits", _ulimits(want.get("ulimits")), _ulimits(host.get("Ulimits")))
    # set-only: the engine's defaults for these depend on its own configuration
    if want.get("shm_size") is not None:
        check("shm_size", int(want["shm_size"]), int(host.get("ShmSize") or 0))
    if want.get("ipc_mode"):
        check("ipc", want["ipc_mode"], host.get("IpcMode"))
    if want.get("pids_limit") is not None:
        check("pids_limit", int(want["pids_limit"]), int(host.get("PidsLimit") or 0))


_HOST_NUMBERS = {
    "mem_limit": "Memory",
    "mem_reservation": "MemoryReservation",
    "cpu_shares": "CpuShares",
    "cpu_quota": "CpuQuota",
    "nano_cpus": "NanoCpus",
    "oom_score_adj": "OomScoreAdj",
}
_HOST_STRINGS = {
    "cpuset_cpus": "CpusetCpus",
    "pid_mode": "PidMode",
    "userns_mode": "UsernsMode",
    "cgroup_parent": "CgroupParent",
}


def _check_networks(
    spec: ContainerSpec, container: Mapping[str, Any], check: Callable[[str, Any, Any], None]
) -> None:
    mode = spec.host_config.get("network_mode") or ""
    if isinstance(mode, str) and mode.startswith("service:"):
        return  # the engine records the peer's container id, judged by the peer's own config
    host: Mapping[str, Any] = container.get("HostConfig") or {}
    check("network_mode", mode, host.get("NetworkMode") or "")
    if spec.primary_network is None:
        return
    wanted = {spec.primary_network, *spec.extra_networks}
    attached: Mapping[str, Any] = (container.get("NetworkSettings") or {}).get("Networks") or {}
    check("networks", wanted, set(attached))
    # per network, what the target asks for (the engine adds the container's short id and
    # DNS names to the aliases, and addresses where none were asked for: as the reference,
    # only what is asked is compared)
    for net, settings in spec.endpoints.items():
        if net not in attached:
            continue  # (a difference of networks already)
        endpoint: Mapping[str, Any] = attached[net] or {}
        aliases = set(settings.get("aliases") or ())
        have = set(endpoint.get("Aliases") or ()) | set(endpoint.get("DNSNames") or ())
        check("aliases", True, aliases <= have)
        ipam: Mapping[str, Any] = endpoint.get("IPAMConfig") or {}
        for key, engine_key in (("ipv4_address", "IPv4Address"), ("ipv6_address", "IPv6Address")):
            if settings.get(key):
                check(key, settings[key], ipam.get(engine_key))


def _env_dict(env: Iterable[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env or ():
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def _env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in env.items() if k not in IGNORED_ENV}


def _labels(labels: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for key, value in labels.items():
        key = "io.balena." + key.removeprefix("io.resin.") if key.startswith("io.resin.") else key
        if key not in BOOKKEEPING_LABELS:
            out[key] = str(value)
    return out


def _seq(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _healthcheck(
    spec: Mapping[str, Any] | None, engine: Mapping[str, Any] | None
) -> tuple[Any, ...] | None:
    if spec:
        return (
            tuple(spec.get("test") or ()),
            int(spec.get("interval") or 0),
            int(spec.get("timeout") or 0),
            int(spec.get("retries") or 0),
            int(spec.get("start_period") or 0),
        )
    if not engine or not engine.get("Test"):
        return None
    return (
        tuple(engine.get("Test") or ()),
        int(engine.get("Interval") or 0),
        int(engine.get("Timeout") or 0),
        int(engine.get("Retries") or 0),
        int(engine.get("StartPeriod") or 0),
    )


def _exposed(ports: Iterable[Any]) -> set[str]:
    out = set()
    for port in ports:
        if isinstance(port, tuple):
            out.add(f"{port[0]}/{port[1]}")
        else:
            text = str(port)
            out.add(text if "/" in text else f"{text}/tcp")
    return out


def _bindings_spec(bindings: Mapping[str, Iterable[Any]] | None) -> set[tuple[str, str, str]]:
    out = set()
    for port, targets in (bindings or {}).items():
        key = port if "/" in port else f"{port}/tcp"
        for target in targets:
            ip, host_port = target if isinstance(target, tuple) else ("", target)
            out.add((key, ip or "", "" if host_port is None else str(host_port)))
    return out


def _bindings_engine(host: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for port, targets in (host.get("PortBindings") or {}).items():
        for target in targets or ():
            ip = target.get("HostIp") or ""
            out.add((port, "" if ip in ("0.0.0.0", "::") else ip, target.get("HostPort") or ""))
    return out


def _restart(policy: Mapping[str, Any] | None) -> tuple[str, int]:
    policy = policy or {}
    name = str(policy.get("Name") or "no")
    return name, int(policy.get("MaximumRetryCount") or 0) if name == "on-failure" else 0


def _caps(caps: Iterable[str] | None) -> set[str]:
    return {c.upper().removeprefix("CAP_") for c in caps or ()}


def _devices_spec(devices: Iterable[str] | None) -> set[tuple[str, str, str]]:
    out = set()
    for device in devices or ():
        parts = str(device).split(":")
        host = parts[0]
        inside = parts[1] if len(parts) > 1 and parts[1] else host
        perms = parts[2] if len(parts) > 2 and parts[2] else "rwm"
        out.add((host, inside, perms))
    return out


def _devices_engine(devices: Iterable[Mapping[str, Any]] | None) -> set[tuple[str, str, str]]:
    return {
        (
            str(d.get("PathOnHost") or ""),
            str(d.get("PathInContainer") or d.get("PathOnHost") or ""),
            str(d.get("CgroupPermissions") or "rwm"),
        )
        for d in devices or ()
    }


def _ulimits(ulimits: Iterable[Mapping[str, Any]] | None) -> set[tuple[str, int, int]]:
    return {
        (str(u.get("Name")), int(u.get("Soft") or 0), int(u.get("Hard") or 0))
        for u in ulimits or ()
    }
