"""Planning one target app: the per-app rules of the planner (see `planner.plan`).

Everything here is pure. `EngineIndex` is built once per pass by the planner, so looking up an
app's containers, an image or a volume is a dict or set lookup, never a scan of the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import assert_never

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
from agent.model.current import app_network_name, rank_containers, volume_engine_name
from agent.model.target import UpdateStrategy, service_networks
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

    def network_name(self, app: AppSpec, name: str) -> str:
        """The engine name of the app's network `name` (balena's `{appUuid}_{name}` when only
        that one exists: a takeover)."""
        return app_network_name(app.id, app.uuid, name, self.networks)

    def networks_of(self, app: AppSpec) -> list[NetworkState]:
        """The app's networks: labelled with its uuid, or (left by an older supervisor that
        labelled networks with the app id only) with its id."""
        legacy = self.legacy_networks.get(app.id, ()) if app.id > 0 else ()
        return sorted([*self.app_networks.get(app.uuid, ()), *legacy], key=lambda n: n.name)


def _kill_first(
    services: Mapping[str, ServiceSpec],
    hashes: Mapping[str, str],
    by_service: Mapping[str, Sequence[ContainerState]],
    missing: Mapping[str, Sequence[str]],
) -> list[Step]:
    """kill-then-download / delete-then-download: a service whose new image is missing has
    its old containers stopped first (and, for delete-, their image removed) — for devices
    short on disk. Its download follows on the next pass."""
    waiting_for_image = {name for names in missing.values() for name in names}
    steps: list[Step] = []
    for name in sorted(waiting_for_image):
        match services[name].update_strategy:
            case UpdateStrategy.KILL_THEN_DOWNLOAD:
                remove_image = False
            case UpdateStrategy.DELETE_THEN_DOWNLOAD:
                remove_image = True
            case UpdateStrategy.DOWNLOAD_THEN_KILL | UpdateStrategy.HAND_OVER:
                continue  # the old container serves while the new image downloads
            case unknown:
                assert_never(unknown)
        for c in by_service.get(name, ()):
            if c.config_hash != hashes[name]:
                steps.append(Kill(c, remove_image=remove_image))
    return steps


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
    networks = needed_networks(release)
    creates = _create_steps(app, release, networks, idx)
    locked = app.id in ctx.locked_apps and not ctx.force

    if missing:
        status = UpdateStatus.DOWNLOADING
        kills = _kill_first(services, hashes, by_service, missing)
        if kills:  # stop first, download on the next pass
            plan = AppPlan(
                app.uuid,
                release_uuid,
                status,
                missing_images=tuple(missing),
                blocked_by_lock=locked,
            )
            return plan, creates if locked else creates + kills
        pulls: list[Step] = [
            Pull(image, app.uuid, tuple(names)) for image, names in missing.items()
        ]
        # every image of the release is on the device before any container changes
        return AppPlan(app.uuid, release_uuid, status, missing_images=tuple(missing)), [
            *pulls,
            *creates,
        ]
    steps: list[Step] = list(creates)

    container_steps, waiting = _container_steps(app, services, hashes, by_service, idx, ctx)
    if not container_steps and not waiting:
        # Every service has exactly one container of its config, in the right release and
        # run state (anything else yields a step or a reason to wait): the app is done.
        needed = {idx.network_name(app, name) for name in networks}
        steps += [
            RemoveNetwork(n.name, n.app_uuid) for n in idx.networks_of(app) if n.name not in needed
        ]
        return AppPlan(app.uuid, release_uuid, UpdateStatus.DONE), steps

    held = ctx.hold_apply is not None and app.uuid not in ctx.hold_exempt
    if held and not _apply_started(release_uuid, by_service):
        # outside the update window: downloaded, the running release left alone
        status = UpdateStatus.DOWNLOADED
        return AppPlan(app.uuid, release_uuid, status, reason=ctx.hold_apply, held=True), steps
    if locked:
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


def _apply_started(
    release_uuid: str | None, by_service: Mapping[str, Sequence[ContainerState]]
) -> bool:
    """Whether the release's apply is under way or nothing runs that it would disturb: no
    container of the app, or one of the target release (a window that ends mid-apply lets the
    apply finish; a first install is not held)."""
    containers = [c for cs in by_service.values() for c in cs]
    return not containers or any(c.release_uuid == release_uuid for c in containers)


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
        if idx.network_name(app, name) not in idx.networks:
            steps.append(CreateNetwork(app, networks[name]))
    return steps


def _container_steps(
    app: AppSpec,
    services: Mapping[str, ServiceSpec],
    hashes: Mapping[str, str],
    by_service: Mapping[str, Sequence[ContainerState]],
    idx: EngineIndex,
    ctx: PlanContext,
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
        if svc.update_strategy is UpdateStrategy.HAND_OVER and any(
            c.config_hash != want for c in current
        ):
            more_steps, more_waiting = _hand_over(
                app, svc, want, current, services, hashes, by_service, idx, ctx
            )
            steps += more_steps
            waiting += more_waiting
            continue
        keep, *extra = rank_containers(current, want)
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


def _hand_over(
    app: AppSpec,
    svc: ServiceSpec,
    want: str,
    current: Sequence[ContainerState],
    services: Mapping[str, ServiceSpec],
    hashes: Mapping[str, str],
    by_service: Mapping[str, Sequence[ContainerState]],
    idx: EngineIndex,
    ctx: PlanContext,
) -> tuple[list[Step], list[str]]:
    """hand-over: the new container starts beside the old one; the old one is killed once the
    new one is running — and healthy, if it has a healthcheck — and has either signalled
    `handover-complete` or outlived the hand-over timeout. Until then the old one serves; if
    the new one dies or turns unhealthy, the old one keeps serving and the app is not done."""
    old = [c for c in current if c.config_hash != want]
    new = [c for c in current if c.config_hash == want]
    name = svc.name
    if not new:
        blockers = _missing_resources(app, svc, idx) + _unmet_dependencies(
            svc, services, hashes, by_service
        )
        return ([], blockers) if blockers else ([Start(app, svc)], [])
    keep, *extra = rank_containers(new, want)
    steps: list[Step] = [Kill(c) for c in extra]
    if not svc.running:  # told not to run: there is no service to hand over
        return steps + [Kill(c) for c in old], []
    healthy = keep.health in (None, "healthy")
    if keep.running and healthy:
        signalled = (app.id, name) in ctx.handover_done
        waited = ctx.now - keep.created_ts
        if signalled or waited >= svc.handover_timeout_s:
            return steps + [Kill(c) for c in old], []
        remaining = max(0.0, svc.handover_timeout_s - waited)
        return steps, [
            f"{name} hands over: old container serves until handover-complete or {remaining:.0f} s"
        ]
    if keep.status == ContainerStatus.CREATED:
        return [*steps, StartContainer(keep)], []
    state = keep.health if keep.running else keep.status.value
    return steps, [f"{name}: new container is {state}; the old one keeps serving"]


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
        if idx.network_name(app, net) not in idx.networks
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
