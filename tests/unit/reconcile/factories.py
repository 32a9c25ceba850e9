"""Builders for planner tests: v3 target documents, engine objects, and the plan/apply loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.model import (
    ContainerState,
    ContainerStatus,
    CurrentState,
    ImageState,
    NetworkState,
    TargetState,
    VolumeState,
    normalize_image_ref,
    parse_target,
)
from agent.model.current import container_name
from agent.reconcile.planner import plan
from agent.reconcile.steps import (
    CreateNetwork,
    CreateVolume,
    Kill,
    Plan,
    PlanContext,
    Pull,
    RemoveImage,
    RemoveNetwork,
    Start,
    StartContainer,
    Step,
    StopContainer,
    UpdateMetadata,
)
from tests.unit.reconcile.sim import apply_all, image_id_for, one_shots

DEVICE = "device-1"


def svc(image: str, **extra: Any) -> dict[str, Any]:
    """A v3 service entry; `extra` may hold environment, labels, running, composition, id..."""
    return {"id": 1, "image_id": 1, "image": image, **extra}


def release(uuid: str, services: dict[str, Any], rid: int = 1, **extra: Any) -> dict[str, Any]:
    return {uuid: {"id": rid, "services": services, **extra}}


def app(app_id: int, releases: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {"id": app_id, "name": name or f"app{app_id}", "releases": releases}


def target(apps: dict[str, Any]) -> TargetState:
    return parse_target({DEVICE: {"name": "dev", "config": {}, "apps": apps}}, DEVICE)


def image(ref: str, *more: str, managed: bool = True, image_id: str | None = None) -> ImageState:
    refs = frozenset(normalize_image_ref(r) for r in (ref, *more))
    return ImageState(id=image_id or image_id_for(ref), refs=refs, managed=managed)


def container(
    cid: str,
    app_uuid: str,
    service: str,
    *,
    app_id: int = 1,
    release_uuid: str = "old",
    release_id: int = 0,
    image_ref: str = "old:1",
    config_hash: str | None = "stale",
    status: ContainerStatus = ContainerStatus.RUNNING,
    health: str | None = None,
    exit_code: int | None = None,
    created_at: str = "000000",
    image_docker_id: str | None = None,
) -> ContainerState:
    return ContainerState(
        id=cid,
        name=container_name(service, 1, release_id, release_uuid),
        app_id=app_id,
        app_uuid=app_uuid,
        service_name=service,
        service_id=1,
        image_id=1,
        release_uuid=release_uuid,
        release_id=release_id,
        image=image_ref,
        image_docker_id=image_docker_id or image_id_for(image_ref),
        config_hash=config_hash,
        status=status,
        health=health,
        exit_code=exit_code,
        created_at=created_at,
    )


def running_for(
    tgt: TargetState, app_uuid: str, service: str, cid: str, **changes: Any
) -> ContainerState:
    """A container exactly as the target asks for `service` (override fields with changes)."""
    spec = tgt.apps[app_uuid]
    assert spec.release is not None
    s = spec.release.services[service]
    fields: dict[str, Any] = dict(
        app_id=spec.id,
        release_uuid=spec.release.uuid,
        release_id=spec.release.id,
        image_ref=s.image,
        config_hash=s.config_hash(),
        status=ContainerStatus.RUNNING if s.running else ContainerStatus.CREATED,
    )
    fields.update(changes)
    return container(cid, app_uuid, service, **fields)


def volume(name: str, app_id: int = 1, app_uuid: str | None = "a1") -> VolumeState:
    return VolumeState(name=name, app_id=app_id, app_uuid=app_uuid)


def network(name: str, app_id: int = 1, app_uuid: str | None = "a1") -> NetworkState:
    return NetworkState(name=name, id=f"net-{name}", app_id=app_id, app_uuid=app_uuid)


def state(*items: Any) -> CurrentState:
    """A CurrentState from a mix of containers, images, volumes and networks."""
    return CurrentState(
        containers=tuple(i for i in items if isinstance(i, ContainerState)),
        images=tuple(i for i in items if isinstance(i, ImageState)),
        volumes=tuple(i for i in items if isinstance(i, VolumeState)),
        networks=tuple(i for i in items if isinstance(i, NetworkState)),
    )


def describe(step: Step) -> str:
    """A short, readable form of a step for assertions: `Kill c-web`, `Start a1/db`..."""
    name = type(step).__name__
    match step:
        case Start(app=a, service=s):
            return f"{name} {a.uuid}/{s.name}"
        case Kill(container=c) | StartContainer(container=c) | StopContainer(container=c):
            return f"{name} {c.id}"
        case UpdateMetadata(container=c, app=a):
            return f"{name} {c.id} -> {a.release.uuid if a.release else a.release_uuid}"
        case Pull(image=image, services=services):
            return f"{name} {image} for {','.join(services)}"
        case CreateVolume(app=a, volume=v):
            return f"{name} {a.id}_{v.name}"
        case CreateNetwork(app=a, network=n):
            return f"{name} {a.id}_{n.name}"
        case RemoveNetwork(name=net):
            return f"{name} {net}"
        case RemoveImage(refs=refs):
            return f"{name} {','.join(refs)}"
    raise AssertionError(step)


def described(steps: Sequence[Step]) -> list[str]:
    return [describe(s) for s in steps]


def converge(
    current: CurrentState, tgt: TargetState, ctx: PlanContext | None = None, passes: int = 10
) -> tuple[CurrentState, list[Plan]]:
    """Plan and apply until a pass has no steps; returns the final state and every plan (the
    last one has no steps). Fails if that takes more than `passes` passes."""
    ctx = ctx or PlanContext()
    plans: list[Plan] = []
    exits = one_shots(tgt)
    for _ in range(passes + 1):
        p = plan(current, tgt, ctx)
        plans.append(p)
        if not p.steps:
            return current, plans
        current = apply_all(current, p.steps, exits)
    raise AssertionError(f"no convergence in {passes} passes; last steps: {plans[-1].steps}")


def two_service_target(web_image: str = "web:2", rel: str = "r2", rid: int = 2):
    return target(
        {
            "a1": app(
                1,
                release(
                    rel,
                    {
                        "db": svc(
                            "db:1",
                            composition={"volumes": ["data:/var/lib/db"]},
                        ),
                        "web": svc(web_image, composition={"depends_on": ["db"]}),
                    },
                    rid=rid,
                    volumes={"data": {}},
                ),
            )
        }
    )


def old_release_state(tgt_old, *extra):
    return state(
        image("db:1"),
        image("web:1"),
        volume("1_data"),
        network("1_default"),
        running_for(tgt_old, "a1", "db", "c-db"),
        running_for(tgt_old, "a1", "web", "c-web"),
        *extra,
    )


ROLLBACK_DEVICE = "dev1"


def rollback_body(release: str, image: str) -> dict[str, Any]:
    """A cloud target for the rollback controller's tests: app a1 with one service, web."""
    svc = {"id": 1, "image_id": 1, "image": image, "environment": {}, "labels": {}}
    app = {
        "id": 1,
        "name": "demo",
        "class": "fleet",
        "releases": {release: {"id": 1, "services": {"web": svc}}},
    }
    return {ROLLBACK_DEVICE: {"name": "d", "config": {}, "apps": {"a1": app}}}
