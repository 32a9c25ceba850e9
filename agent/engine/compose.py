"""Translate a target service into the engine's container-create arguments. Pure: no docker
import, no I/O — `engine/docker.py` feeds the result to the SDK."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.engine.features import (
    Features,
    HostFacts,
    bind_target,
    features,
    normalize_labels,
    twins,
)
from agent.model import AppSpec, Composition, ServiceSpec
from agent.model.compose_options import Endpoint
from agent.model.compose_values import RESERVED_MOUNTS, parse_port
from agent.model.current import (
    LABEL_APP_ID,
    LABEL_APP_UUID,
    LABEL_CONFIG_HASH,
    LABEL_IMAGE_ID,
    LABEL_IMAGE_REF,
    LABEL_RELEASE_ID,
    LABEL_RELEASE_UUID,
    LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME,
    LABEL_SUPERVISED,
    container_name,
    network_engine_name,
    volume_engine_name,
)
from agent.model.target import service_networks

LOCK_MOUNTS = RESERVED_MOUNTS
SUPERVISOR_API_LABEL = "io.balena.features.supervisor-api"


@dataclass(frozen=True)
class DeviceContext:
    """Device facts every container learns through its environment."""

    uuid: str
    device_type: str
    lock_dir: Path
    supervisor_version: str
    extra_env: dict[str, str] = field(default_factory=dict)
    api_port: int | None = None  # the local supervisor API, for `io.balena.features.supervisor-api`
    api_host: str = "127.0.0.1"
    # the same for host-networked services: the device's loopback (or config `listenAddress`)
    loopback_api_host: str = "127.0.0.1"
    # the engine network supervisor-api services off the host network join (engine/supnet.py)
    supervisor_network: str | None = None
    app_api_keys: Mapping[int, str] = field(default_factory=dict)  # app id -> app-scoped key
    # for the reference's environment and the `io.balena.features.*` labels (engine/features.py)
    device_arch: str = ""
    device_name: Callable[[], str] = field(default=lambda: "")  # the target's, at create time
    api_endpoint: str = ""
    device_api_key: str = ""
    host: HostFacts = field(default_factory=HostFacts)


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    create: dict[str, Any]  # kwargs for APIClient.create_container (without host_config)
    host_config: dict[str, Any]  # kwargs for APIClient.create_host_config
    primary_network: str | None  # engine network joined at create time
    aliases: tuple[str, ...]
    extra_networks: tuple[str, ...]  # engine networks connected before start
    # engine network -> APIClient.create_endpoint_config kwargs (aliases, addresses)
    endpoints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    features_left_out: tuple[str, ...] = ()  # what feature labels asked for and the host lacks


def service_lock_dir(lock_dir: Path, app_id: int, service_name: str) -> Path:
    return lock_dir / str(app_id) / service_name


def container_spec(
    app: AppSpec, service: ServiceSpec, device: DeviceContext, release_uuid: str, release_id: int
) -> ContainerSpec:
    comp = service.composition
    lock_host_dir = service_lock_dir(device.lock_dir, app.id, service.name)
    feats = service_features(service, device)
    environment = {
        **default_env(app, service, device),
        **device.extra_env,
        **supervisor_api_env(app, service, device),
        **feats.env_defaults,
        **service.environment,
        **feats.env,
        **twins({"DEVICE_NAME_AT_INIT": device.device_name()}),  # never the service's own
    }
    labels = {
        **normalize_labels(service.labels),
        LABEL_SUPERVISED: "true",
        LABEL_APP_ID: str(app.id),
        LABEL_APP_UUID: app.uuid,
        LABEL_SERVICE_ID: str(service.id),
        LABEL_SERVICE_NAME: service.name,
        LABEL_IMAGE_ID: str(service.image_id),
        LABEL_RELEASE_ID: str(release_id),
        LABEL_RELEASE_UUID: release_uuid,
        LABEL_CONFIG_HASH: service.config_hash(),
        LABEL_IMAGE_REF: service.image,
    }
    binds = [_bind(app.id, v) for v in comp.volumes]
    binds += [f"{lock_host_dir}:{mount}" for mount in LOCK_MOUNTS]
    binds += feats.binds
    exposed, port_bindings = parse_ports(comp.ports)
    published = set(exposed)
    if comp.network_mode == "host":  # the engine discards published ports there; the SDK refuses
        port_bindings = {}
    networks = [network_engine_name(app.id, n) for n in service_networks(service)]
    network_mode = networks[0] if networks else comp.network_mode
    create: dict[str, Any] = {
        "image": service.image,
        "name": container_name(service.name, service.image_id, release_id, release_uuid),
        "environment": environment,
        "labels": labels,
        "command": list(comp.command) if comp.command is not None else None,
        "entrypoint": list(comp.entrypoint) if comp.entrypoint is not None else None,
        "working_dir": comp.working_dir,
        "user": comp.user,
        "hostname": comp.hostname,
        "tty": comp.tty,
        "stop_signal": comp.stop_signal,
        "stop_timeout": (
            int(comp.stop_grace_period_s) if comp.stop_grace_period_s is not None else None
        ),
        "ports": [*exposed, *(p for p in comp.expose if p not in published)] or None,
        "domainname": comp.domainname,
        "mac_address": comp.mac_address,
        "healthcheck": _healthcheck(service),
    }
    host_config: dict[str, Any] = {
        "binds": binds,
        "port_bindings": port_bindings or None,
        "restart_policy": restart_policy(comp.restart),
        "network_mode": network_mode,
        "privileged": comp.privileged,
        "cap_add": list(comp.cap_add) or None,
        "cap_drop": list(comp.cap_drop) or None,
        "devices": list(comp.devices) or None,
        "init": comp.init,
        "extra_hosts": list(comp.extra_hosts) or None,
        "tmpfs": list(comp.tmpfs) or None,
        "read_only": comp.read_only or None,
        "dns": list(comp.dns) or None,
        "device_requests": [dict(r) for r in feats.device_requests] or None,
    }
    host_config.update(host_options(comp))
    return ContainerSpec(
        name=create["name"],
        image=service.image,
        create={k: v for k, v in create.items() if v is not None},
        host_config={k: v for k, v in host_config.items() if v is not None},
        primary_network=networks[0] if networks else None,
        aliases=(service.name,),
        extra_networks=(*networks[1:], *supervisor_networks(service, device)),
        endpoints={
            **endpoints(app, service),
            **{n: {"aliases": []} for n in supervisor_networks(service, device)},
        },
        features_left_out=feats.left_out,
    )


def default_env(app: AppSpec, service: ServiceSpec, device: DeviceContext) -> dict[str, str]:
    """What the reference gives every container (a service's own variables win)."""
    return {
        "BALENA": "1",
        "RESIN": "1",
        **twins(
            {
                "APP_ID": str(app.id),
                "APP_UUID": app.uuid,
                "APP_NAME": app.name,
                "SERVICE_NAME": service.name,
                "DEVICE_UUID": device.uuid,
                "DEVICE_TYPE": device.device_type,
                "DEVICE_ARCH": device.device_arch,
                "HOST_OS_VERSION": device.host.os_version,
                "APP_LOCK_PATH": "/tmp/balena/updates.lock",
            }
        ),
        "RESIN_SERVICE_KILL_ME_PATH": "/tmp/balena/handover-complete",
        "BALENA_SERVICE_HANDOVER_COMPLETE_PATH": "/tmp/balena/handover-complete",
        "USER": "root",
        "BALENA_SUPERVISOR_VERSION": device.supervisor_version,  # SUPERVISOR_COMPAT_VERSION
    }


def service_features(service: ServiceSpec, device: DeviceContext) -> Features:
    """The service's `io.balena.features.*` labels against this host (engine/features.py)."""
    comp = service.composition
    taken = {bind_target(v) for v in comp.volumes} | set(LOCK_MOUNTS)
    taken |= {t.split(":", 1)[0] for t in comp.tmpfs}
    return features(
        service.labels,
        device.host,
        api_endpoint=device.api_endpoint,
        device_api_key=device.device_api_key,
        taken_targets=frozenset(taken),
    )


def host_options(comp: Composition) -> dict[str, Any]:
    """APIClient.create_host_config kwargs for the resource, kernel and DNS keys that are set
    (the engine's defaults otherwise)."""
    options: dict[str, Any] = {
        "shm_size": comp.shm_size,
        "mem_limit": comp.mem_limit,
        "mem_reservation": comp.mem_reservation,
        "ulimits": [{"Name": n, "Soft": s, "Hard": h} for n, s, h in comp.ulimits] or None,
        "sysctls": dict(comp.sysctls) or None,
        "pid_mode": comp.pid,
        "ipc_mode": comp.ipc,
        "security_opt": list(comp.security_opt) or None,
        "group_add": list(comp.group_add) or None,
        "cpuset_cpus": comp.cpuset,
        "cpu_shares": comp.cpu_shares,
        "cpu_quota": comp.cpu_quota,
        "nano_cpus": comp.nano_cpus,
        "oom_kill_disable": comp.oom_kill_disable or None,
        "oom_score_adj": comp.oom_score_adj,
        "dns_search": list(comp.dns_search) or None,
        "dns_opt": list(comp.dns_opt) or None,
        "pids_limit": comp.pids_limit,
        "userns_mode": comp.userns_mode,
        "cgroup_parent": comp.cgroup_parent,
    }
    return {k: v for k, v in options.items() if v is not None}


def endpoints(app: AppSpec, service: ServiceSpec) -> dict[str, dict[str, Any]]:
    """Each network's endpoint settings: the service name and its own aliases, and the
    addresses asked for."""
    own = dict(service.composition.endpoints)
    out: dict[str, dict[str, Any]] = {}
    for name in service_networks(service):
        ep = own.get(name, Endpoint())
        settings: dict[str, Any] = {"aliases": list(dict.fromkeys((service.name, *ep.aliases)))}
        if ep.ipv4_address:
            settings["ipv4_address"] = ep.ipv4_address
        if ep.ipv6_address:
            settings["ipv6_address"] = ep.ipv6_address
        if ep.link_local_ips:
            settings["link_local_ips"] = list(ep.link_local_ips)
        out[network_engine_name(app.id, name)] = settings
    return out


def wants_supervisor_api(service: ServiceSpec) -> bool:
    labels = normalize_labels(service.labels)  # io.resin.features.supervisor-api too
    return labels.get(SUPERVISOR_API_LABEL, "").strip().lower() in ("1", "true", "on")


def supervisor_networks(service: ServiceSpec, device: DeviceContext) -> tuple[str, ...]:
    """The supervisor network, for a supervisor-api service with a network of its own (as the
    reference connects it); none on the host network, with none, or sharing a container's."""
    mode = service.composition.network_mode or ""
    if (
        device.supervisor_network is None
        or device.api_port is None
        or not wants_supervisor_api(service)
        or mode in ("host", "none")
        or mode.startswith(("service:", "container:"))
    ):
        return ()
    return (device.supervisor_network,)


def supervisor_api_env(app: AppSpec, service: ServiceSpec, device: DeviceContext) -> dict[str, str]:
    """The local API's address and the app's own key, for a service labelled
    `io.balena.features.supervisor-api` (both BALENA_ and legacy RESIN_ names)."""
    wanted = wants_supervisor_api(service)
    key = device.app_api_keys.get(app.id)
    if not wanted or key is None or device.api_port is None:
        return {}
    host_net = service.composition.network_mode == "host"
    host = device.loopback_api_host if host_net else device.api_host
    values = {
        "SUPERVISOR_API_KEY": key,
        "SUPERVISOR_HOST": host,
        "SUPERVISOR_PORT": str(device.api_port),
        "SUPERVISOR_ADDRESS": f"http://{host}:{device.api_port}",
    }
    return {f"{prefix}_{k}": v for prefix in ("BALENA", "RESIN") for k, v in values.items()}


def _bind(app_id: int, spec: str) -> str:
    """A named volume gets its app's prefix; an anonymous one is just a container path. (Host
    bind mounts never get here: the model leaves them out, as the reference does.)"""
    source, _, rest = spec.partition(":")
    if not rest:
        return spec
    return f"{volume_engine_name(app_id, source)}:{rest}"


def restart_policy(restart: str) -> dict[str, Any]:
    name, _, count = restart.partition(":")
    if name == "no":
        return {"Name": "no"}
    policy: dict[str, Any] = {"Name": name}
    if name == "on-failure" and count.isascii() and count.isdigit():
        policy["MaximumRetryCount"] = int(count)
    return policy


PortBinding = tuple[str, int | None] | int | None


def parse_ports(
    ports: tuple[str, ...],
) -> tuple[list[tuple[int, str]], dict[str, list[PortBinding]]]:
    """`"8080:80/udp"`, `"127.0.0.1:8000-8002:8000-8002"`, `"80"` → exposed ports and port
    bindings, one per port of a range (the model has validated every entry)."""
    exposed: dict[tuple[int, str], None] = {}  # ordered, each port once (a range may be long)
    bindings: dict[str, list[PortBinding]] = {}
    for spec in ports:
        ports_range = parse_port(spec)
        proto = ports_range.protocol
        for container_port, host_port in ports_range.bindings():
            exposed[(container_port, proto)] = None
            binding: PortBinding = host_port
            if ports_range.host_ip:
                binding = (ports_range.host_ip, host_port)
            bindings.setdefault(f"{container_port}/{proto}", []).append(binding)
    return list(exposed), bindings


def _healthcheck(service: ServiceSpec) -> dict[str, Any] | None:
    hc = service.composition.healthcheck
    if hc is None:
        return None
    ns = 1_000_000_000
    return {
        "test": list(hc.test),
        "interval": int(hc.interval_s * ns),
        "timeout": int(hc.timeout_s * ns),
        "retries": hc.retries,
        "start_period": int(hc.start_period_s * ns),
    }
