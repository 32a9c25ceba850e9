"""Planning one target app: the per-app rules of the planner (see `planner.plan`).

Everything here is pure. `EngineIndex` is built once per pass by the planner, so looking up an
app's containers, an image or a volume is a dict or set lookup, never a scan of the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.model import (
    AppSpec,
    ContainerState,
    ContainerStatus,
    CurrentState,
    NetworkSpec,
    NetworkState,
    ReleaseSpec,
    ServiceSpec,
    UpdateStatus,
    normalize_image_ref,
)
from agent.model.current import network_engine_name, volume_engine_name
from agent.model.target import service_networks
from agent.reconcile.steps import (
    AppPlan,
    CreateNetwork,
    CreateVolume,
    Kill,
    PlanContext,
    Pull,
    RemoveNetwork,
    Start,
    StartContainer,
    Step,
    StopContainer,
    UpdateMetadata,
)

DOWNLOAD_THEN_KILL = "download-then-kill"

_NO_SERVICES: Mapping[str, ServiceSpec] = {}


@dataclass(frozen=True)
class EngineIndex:
    """The current state, indexed once per pass."""

    # app uuid -> service name -> containers (sorted by id)
    containers: Mapping[str, Mapping[str, Sequence[ContainerState]]]
    image_refs: frozenset[str]  # every normalized ref of every image on the engine
    volumes: frozenset[str]  # engine names
    networks: frozenset[str]  # engine names
    app_networks: Mapping[str, Sequence[NetworkState]]  # app uuid -> networks (sorted by name)
    legacy_networks: Mapping[int, Sequence[NetworkState]]  # app id -> networks without an uuid

    @staticmethod
    def build(current: CurrentState) -> EngineIndex:
        containers: dict[str, dict[str, list[ContainerState]]] = {}
        for c in sorted(current.containers, key=lambda c: c.id):
            containers.setdefault(c.app_uuid, {}).setdefault(c.service_name, []).append(c)
        app_networks: dict[str, list[NetworkState]] = {}
        legacy: dict[int, list[NetworkState]] = {}
        for n in sorted(current.networks, key=lambda n: n.name):
            if n.app_uuid:
                app_networks.setdefault(n.app_uuid, []).append(n)
            else:
                legacy.setdefault(n.app_id, []).append(n)
        return EngineIndex(
            containers=containers,
            image_refs=frozenset(ref for image in current.images for ref in image.refs),
            volumes=frozenset(v.name for v in current.volumes),
            networks=frozenset(n.name for n in current.networks),
            app_networks=app_networks,
            legacy_networks=legacy,
        )

    def has_image(self, ref: str) -> bool:
        return normalize_image_ref(ref) in self.image_refs

    def networks_of(self, app: AppSpec) -> list[NetworkState]:
        """The app's networks: labelled with its uuid, or (left by an older supervisor that
        labelled networks with the app id only) with its id."""
        legacy = self.legacy_networks.get(app.id, ()) if app.id > 0 else ()
        return sorted([*self.app_networks.get(app.uuid, ()), *legacy], key=lambda n: n.name)


def app_strategy(release: ReleaseSpec | None) -> str:
    """THE place where an app's update strategy is decided.

    Services may ask for `kill-then-download`, `delete-then-download` or `hand-over` through
    `ServiceSpec.update_strategy`; until those are implemented every app is updated
    download-then-kill: all images of the release are on the device before any old container
    of the app is stopped.
    """
    return DOWNLOAD_THEN_KILL


def plan_app(app: AppSpec, idx: EngineIndex, ctx: PlanContext) -> tuple[AppPlan, list[Step]]:
    """The steps for one target app that can run now, and what to report about it."""
    release = app.release  # None: the app stays, with no services (its containers go)
    release_uuid = release.uuid if release is not None else app.release_uuid
    if app.rejected:
        status = UpdateStatus.REJECTED
        return AppPlan(app.uuid, release_uuid, status, reason=app.rejection), []
    if release_uuid is not None and release_uuid in ctx.aborted:
        reason = ctx.aborted[release_uuid]
        return AppPlan(app.uuid, release_uuid, UpdateStatus.ABORTED, reason=reason), []

    services = release.services if release is not None else _NO_SERVICES
    hashes = {name: svc.config_hash() for name, svc in services.items()}
    by_service = idx.containers.get(app.uuid, {})

    missing = _missing_images(services, idx)
    steps: list[Step] = [
        Pull(image, app.uuid, tuple(names)) for image, names in sorted(missing.items())
    ]
    networks = needed_networks(release)
    steps += _create_steps(app, release, networks, idx)

    if missing and app_strategy(release) == DOWNLOAD_THEN_KILL:
        status = UpdateStatus.DOWNLOADING
        return AppPlan(app.uuid, release_uuid, status, missing_images=tuple(missing)), steps

    container_steps, waiting = _container_steps(app, services, hashes, by_service, idx)
    if not container_steps and not waiting:
        # Every service has exactly one container of its config, in the right release and
        # run state (anything else yields a step or a reason to wait): the app is done.
        needed = {network_engine_name(app.id, name) for name in networks}
        steps += [
            RemoveNetwork(n.name, n.app_uuid) for n in idx.networks_of(app) if n.name not in needed
        ]
        return AppPlan(app.uuid, release_uuid, UpdateStatus.DONE), steps

    if app.id in ctx.locked_apps and not ctx.force:
        # downloads (and volume/network creation) go on; the app's containers stay as they are
        return (
            AppPlan(
                app.uuid,
                release_uuid,
                UpdateStatus.DOWNLOADED,
                blocked_by_lock=True,
                waiting_on=tuple(waiting),
            ),
            steps,
        )
    status = UpdateStatus.APPLYING_CHANGES
    plan = AppPlan(app.uuid, release_uuid, status, waiting_on=tuple(waiting))
    return plan, steps + container_steps


def needed_networks(release: ReleaseSpec | None) -> dict[str, NetworkSpec]:
    """The release's networks by logical name, plus an implied `default` when a service uses it."""
    if release is None:
        return {}
    networks = dict(release.networks)
    if "default" not in networks and any(
        "default" in service_networks(s) for s in release.services.values()
    ):
        networks["default"] = NetworkSpec(name="default")
    return networks


def _missing_images(services: Mapping[str, ServiceSpec], idx: EngineIndex) -> dict[str, list[str]]:
    """Images not on the engine -> the services needing each, both sorted."""
    missing: dict[str, list[str]] = {}
    for name in sorted(services):
        image = services[name].image
        if not idx.has_image(image):
            missing.setdefault(image, []).append(name)
    return dict(sorted(missing.items()))


def _create_steps(
    app: AppSpec,
    release: ReleaseSpec | None,
    networks: Mapping[str, NetworkSpec],
    idx: EngineIndex,
) -> list[Step]:
    steps: list[Step] = []
    if release is not None:
        for name in sorted(release.volumes):
            if volume_engine_name(app.id, name) not in idx.volumes:
                steps.append(CreateVolume(app, release.volumes[name]))
    for name in sorted(networks):
        if network_engine_name(app.id, name) not in idx.networks:
            steps.append(CreateNetwork(app, networks[name]))
    return steps


def _container_steps(
    app: AppSpec,
    services: Mapping[str, ServiceSpec],
    hashes: Mapping[str, str],
    by_service: Mapping[str, Sequence[ContainerState]],
    idx: EngineIndex,
) -> tuple[list[Step], list[str]]:
    """Kill / Start / UpdateMetadata / StartContainer / StopContainer, and reasons to wait."""
    release_uuid = app.release.uuid if app.release is not None else None
    steps: list[Step] = []
    waiting: list[str] = []
    for name in sorted(by_service):
        if name not in services:  # a service the release no longer has
            steps += [Kill(c) for c in by_service[name]]
    for name in sorted(services):
        svc, want = services[name], hashes[name]
        current = by_service.get(name, ())
        if not current:
            blockers = _missing_resources(app, svc, idx) + _unmet_dependencies(
                svc, services, hashes, by_service
            )
            if blockers:
                waiting += blockers
            else:
                steps.append(Start(app, svc))
            continue
        keep, *extra = _rank(current, want)
        steps += [Kill(c) for c in extra]
        if keep.config_hash != want:
            steps.append(Kill(keep))  # its replacement starts on a later pass
        elif keep.release_uuid != release_uuid:
            steps.append(UpdateMetadata(keep, app, svc))
        elif svc.running and keep.status == ContainerStatus.CREATED:
            # an exited container is left alone: the engine's restart policy owns it
            blockers = _unmet_dependencies(svc, services, hashes, by_service)
            if blockers:
                waiting += blockers
            else:
                steps.append(StartContainer(keep))
        elif not svc.running and keep.running:
            steps.append(StopContainer(keep))
    return steps, list(dict.fromkeys(waiting))


def _rank(containers: Sequence[ContainerState], want: str) -> list[ContainerState]:
    """Best container to keep first: the target config, then running, then newest, then id."""
    ranked = sorted(containers, key=lambda c: c.id)
    ranked.sort(key=lambda c: c.created_at, reverse=True)  # stable: ties stay by id
    ranked.sort(key=lambda c: (c.config_hash != want, not c.running))
    return ranked


def _missing_resources(app: AppSpec, svc: ServiceSpec, idx: EngineIndex) -> list[str]:
    # (the image is always there under download-then-kill; other strategies may get here early)
    waiting = [f"{svc.name} waits for image {svc.image}"] if not idx.has_image(svc.image) else []
    waiting += [
        f"{svc.name} waits for volume {vol}"
        for vol in svc.composition.named_volumes()
        if volume_engine_name(app.id, vol) not in idx.volumes
    ]
    waiting += [
        f"{svc.name} waits for network {net}"
        for net in service_networks(svc)
        if network_engine_name(app.id, net) not in idx.networks
    ]
    return waiting


def _unmet_dependencies(
    svc: ServiceSpec,
    services: Mapping[str, ServiceSpec],
    hashes: Mapping[str, str],
    by_service: Mapping[str, Sequence[ContainerState]],
) -> list[str]:
    deps = list(svc.composition.depends_on)
    mode = svc.composition.network_mode or ""
    if mode.startswith("service:"):
        deps.append((mode.removeprefix("service:"), "service_started"))
    return [
        f"{svc.name} waits for {dep} ({cond})"
        for dep, cond in dict.fromkeys(deps)
        if not _dependency_met(dep, cond, services, hashes, by_service)
    ]


def _dependency_met(
    dep: str,
    cond: str,
    services: Mapping[str, ServiceSpec],
    hashes: Mapping[str, str],
    by_service: Mapping[str, Sequence[ContainerState]],
) -> bool:
    target = services.get(dep)
    if target is None:
        return False
    matching = [c for c in by_service.get(dep, ()) if c.config_hash == hashes[dep]]
    if not matching:
        return False
    if not target.running:
        # told not to run: existing is all it will ever do, so waiting for more would deadlock
        return True
    return any(_condition_holds(c, cond) for c in matching)


def _condition_holds(c: ContainerState, cond: str) -> bool:
    if cond == "service_healthy":
        return c.running and c.health in (None, "healthy")
    if cond == "service_completed_successfully":
        return c.status == ContainerStatus.EXITED and c.exit_code == 0
    return c.running  # service_started
