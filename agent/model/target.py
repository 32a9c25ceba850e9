"""The v3 target state: parsing and validation into frozen dataclasses.

The cloud sends `{deviceUuid: {name, config, apps: {appUuid: {...}}}}`. A structurally broken
document raises `TargetStateError`; a broken *app* inside a sound document is kept as an
`AppSpec` with a `rejection` reason, so the other apps are still applied and the running ones
are never touched because of a neighbour's mistake.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from agent.errors import TargetStateError
from agent.model.checks import _is_positive_int, _str_map
from agent.model.compose_options import Endpoint, IpamPool, ipam_pools
from agent.model.composition import (
    KNOWN_COMPOSE_KEYS,
    SPECIAL_NETWORK_MODES,
    Composition,
    Healthcheck,
    parse_composition,
    parse_duration,
)
from agent.model.skipped import SkippedService

__all__ = [
    "KNOWN_COMPOSE_KEYS",
    "AppSpec",
    "Composition",
    "Healthcheck",
    "NetworkSpec",
    "ReleaseSpec",
    "ServiceSpec",
    "TargetState",
    "UpdateStrategy",
    "VolumeSpec",
    "parse_duration",
    "service_networks",
]

SERVICE_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # used with fullmatch
# engine object names are `{appId}_{name}` (volumes) or contain the release uuid (containers)
ENGINE_NAME_PART_RE = re.compile(r"[a-zA-Z0-9_.-]+")


class UpdateStrategy(StrEnum):
    """A service's `io.balena.update.strategy` label, spelled as on the wire."""

    DOWNLOAD_THEN_KILL = "download-then-kill"
    KILL_THEN_DOWNLOAD = "kill-then-download"
    DELETE_THEN_DOWNLOAD = "delete-then-download"
    HAND_OVER = "hand-over"


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
    def update_strategy(self) -> UpdateStrategy:
        """THE place where a service's update strategy is decided: its
        `io.balena.update.strategy` (or `io.resin.`) label; unknown or missing means
        download-then-kill, as the reference."""
        value = self.labels.get("io.balena.update.strategy") or self.labels.get(
            "io.resin.update.strategy"
        )
        try:
            return UpdateStrategy(value or "")
        except ValueError:
            return UpdateStrategy.DOWNLOAD_THEN_KILL

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
    # `ipam: {config: [{subnet, gateway, ip_range}]}`, what a service's ipv4_address needs
    ipam: tuple[IpamPool, ...] = ()


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
    # services the agent accepts but never runs (host app, hostapp images, the supervisor)
    skipped: tuple[SkippedService, ...] = ()

    @property
    def rejected(self) -> bool:
        return self.rejection is not None

    @property
    def runs_nothing(self) -> bool:
        """A host app, or an app all of whose services are skipped: nothing of it is run."""
        services = self.release.services if self.release is not None else {}
        return self.is_host or (bool(self.skipped) and not services and not self.rejected)


@dataclass(frozen=True)
class TargetState:
    device_uuid: str
    name: str
    config: Mapping[str, str]
    apps: Mapping[str, AppSpec]


def parse_app(uuid: str, raw: Any) -> AppSpec:
    """One app of a target document; what is wrong with it is its `rejection`."""
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
        for net in service_networks(svc):
            if net not in networks and net != "default":
                raise TargetStateError(
                    f"app {app}: service {svc.name} joins undeclared network {net}"
                )
        for net, endpoint in svc.composition.endpoints:
            _check_addresses(app, svc.name, networks.get(net), endpoint)
        peer = network_peer(svc)
        if peer is not None and (peer not in services or peer == svc.name):
            raise TargetStateError(
                f"app {app}: service {svc.name}: network_mode: no other service {peer}"
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
    # the composition's own environment and labels count too, under the service's (as the
    # reference merges them)
    environment = {
        **_str_map(comp_raw.get("environment") or {}, f"{where}: composition.environment"),
        **_str_map(raw.get("environment", {}), f"{where}: environment"),
    }
    labels = {
        **_str_map(comp_raw.get("labels") or {}, f"{where}: composition.labels"),
        **_str_map(raw.get("labels", {}), f"{where}: labels"),
    }
    return ServiceSpec(
        name=name,
        id=int(raw.get("id", 0)),
        image_id=int(raw.get("image_id", 0)),
        image=image.strip(),
        environment=environment,
        labels=labels,
        running=running,
        composition=parse_composition(where, comp_raw),
    )


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
    try:
        ipam = ipam_pools(raw.get("ipam"))
    except ValueError as exc:
        raise TargetStateError(f"app {app}: network {name}: ipam: {exc}") from None
    return NetworkSpec(
        name=name,
        driver=str(raw.get("driver", "bridge")),
        internal=bool(raw.get("internal", False)),
        labels=_str_map(raw.get("labels", {}), f"app {app}: network {name}"),
        ipam=ipam,
    )


def _check_addresses(
    app: str, service: str, network: NetworkSpec | None, endpoint: Endpoint
) -> None:
    """The engine takes a fixed address only on a network with a subnet of its own that
    holds it."""
    for address in (endpoint.ipv4_address, endpoint.ipv6_address):
        if address is None:
            continue
        ip = ipaddress.ip_address(address)
        subnets = [ipaddress.ip_network(p.subnet) for p in (network.ipam if network else ())]
        if not any(ip.version == net.version and ip in net for net in subnets):
            raise TargetStateError(
                f"app {app}: service {service}: networks: {address} is in no subnet "
                f"declared in the network's ipam config"
            )


def _check_dependency_cycles(app: str, services: Mapping[str, ServiceSpec]) -> None:
    """Depth-first, without recursion: a chain of thousands of services is just a long loop."""
    done: set[str] = set()
    for root in services:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(_dependencies(services[root]))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
                continue
            if dep in on_path:
                names = [*path[path.index(dep) :], dep]
                if len(names) > 10:  # a reason for the dashboard, not a dump
                    names = [*names[:5], f"... ({len(names) - 8} more)", *names[-3:]]
                cycle = " -> ".join(names)
                raise TargetStateError(f"app {app}: depends_on cycle {cycle}")
            if dep in done:
                continue
            path.append(dep)
            on_path.add(dep)
            stack.append(iter(_dependencies(services[dep])))


# --- small validators -------------------------------------------------------------------------


def _obj(raw: dict[str, Any], key: str, app: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise TargetStateError(f"app {app}: '{key}' must be an object")
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        # a field marked `hash: False` always counts as its default: it never changes a hash,
        # and hashes of configs without it stay what they were
        # (and one marked `hash: "if_set"` counts only when set: a key added to the model
        # leaves the hashes of configs without it as they were)
        return {
            k: _jsonable(getattr(value, k) if f.metadata.get("hash", True) else f.default)
            for k, f in value.__dataclass_fields__.items()
            if f.metadata.get("hash") != "if_set" or getattr(value, k) != f.default
        }
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def service_networks(service: ServiceSpec) -> tuple[str, ...]:
    """The app networks (logical names) a service joins, the primary one first: its `networks`,
    else `default`; none with network_mode host/none/bridge/service:, and the named network
    first with network_mode naming one of the app's networks (as the reference does)."""
    comp = service.composition
    mode = comp.network_mode
    if mode is None:
        return comp.networks or ("default",)
    if mode in SPECIAL_NETWORK_MODES or mode.startswith("service:"):
        return ()
    return (mode, *(n for n in comp.networks if n != mode))


def network_peer(service: ServiceSpec) -> str | None:
    """The service whose network a `network_mode: service:<name>` service shares."""
    mode = service.composition.network_mode or ""
    return mode.removeprefix("service:") if mode.startswith("service:") else None


def _dependencies(service: ServiceSpec) -> list[str]:
    peer = network_peer(service)
    return [dep for dep, _ in service.composition.depends_on] + ([peer] if peer else [])


def raw_services(apps: Any) -> Iterator[dict[str, Any]]:
    """Every service entry of a v3 document's `apps`, read leniently (what is not an object is
    passed over): for a look at a document that is not, or not yet, parsed."""
    for app in apps.values() if isinstance(apps, dict) else ():
        releases = app.get("releases") if isinstance(app, dict) else None
        for release in releases.values() if isinstance(releases, dict) else ():
            services = release.get("services") if isinstance(release, dict) else None
            for svc in services.values() if isinstance(services, dict) else ():
                if isinstance(svc, dict):
                    yield svc
