"""Planner time: `plan()` for 200 running services of which 20 differ from the target.

Pure: no engine. 4 apps × 50 services, each on its own image, every service depending on the
previous one (a chain, as in the planner's unit tests). The current state is exactly the first
target running; the second target changes 20 services: 10 get a new image (→ pulls) and 10 a
new environment value (→ recreated), spread over the 4 apps.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

from agent.model import (
    ContainerState,
    ContainerStatus,
    CurrentState,
    ImageState,
    NetworkState,
    TargetState,
    normalize_image_ref,
    parse_target,
)
from agent.model.current import container_name, network_engine_name
from agent.reconcile.planner import plan
from agent.reconcile.steps import PlanContext

from .common import summary

DEVICE = "bench-device"


def _document(apps: int, per_app: int, changed: frozenset[int]) -> dict[str, Any]:
    new_image = frozenset(sorted(changed)[1::2])  # every other changed service: a new image
    out: dict[str, Any] = {}
    for a in range(apps):
        services: dict[str, Any] = {}
        for i in range(per_app):
            n = a * per_app + i
            tag, env = "1", {"N": str(n)}
            if n in new_image:
                tag = "2"
            elif n in changed:
                env = {"N": f"{n}-changed"}
            services[f"s{i:03d}"] = {
                "id": n + 1,
                "image_id": n + 1,
                "image": f"registry.local/bench/img{n:03d}:{tag}",
                "environment": env,
                "labels": {},
                "running": True,
                "composition": {"depends_on": [f"s{i - 1:03d}"] if i else []},
            }
        release = {"id": 1, "services": services, "volumes": {}, "networks": {}}
        out[f"app-{a}"] = {"id": a + 1, "name": f"app{a}", "releases": {"r1": release}}
    return {DEVICE: {"name": "bench", "config": {}, "apps": out}}


def changed_services(total: int, changes: int) -> frozenset[int]:
    """`changes` service numbers out of `total`, evenly spread."""
    if not 0 <= changes <= total:
        raise ValueError("changes must be within 0..total")
    step = total / changes if changes else 1
    return frozenset(int(k * step) for k in range(changes))


def running(target: TargetState) -> CurrentState:
    """The engine as it is once `target` was applied: every container running as specified,
    its image present (and pulled by the agent), each app's default network there."""
    containers: list[ContainerState] = []
    images: list[ImageState] = []
    networks: list[NetworkState] = []
    for uuid, app in sorted(target.apps.items()):
        assert app.release is not None
        rel = app.release
        name = network_engine_name(app.id, "default")
        networks.append(NetworkState(name=name, id=f"net-{name}", app_id=app.id, app_uuid=uuid))
        for svc in rel.services.values():
            docker_id = f"sha256:{svc.image_id:064x}"
            images.append(
                ImageState(
                    id=docker_id, refs=frozenset({normalize_image_ref(svc.image)}), managed=True
                )
            )
            containers.append(
                ContainerState(
                    id=f"c{svc.id:063x}",
                    name=container_name(svc.name, svc.image_id, rel.id, rel.uuid),
                    app_id=app.id,
                    app_uuid=uuid,
                    service_name=svc.name,
                    service_id=svc.id,
                    image_id=svc.image_id,
                    release_uuid=rel.uuid,
                    release_id=rel.id,
                    image=svc.image,
                    image_docker_id=docker_id,
                    config_hash=svc.config_hash(),
                    status=ContainerStatus.RUNNING,
                    created_at="1",
                )
            )
    return CurrentState(
        containers=tuple(containers), images=tuple(images), networks=tuple(networks)
    )


def scenario(
    apps: int = 4, per_app: int = 50, changes: int = 20
) -> tuple[CurrentState, TargetState]:
    """The current state (the unchanged target running) and the target with `changes` edits."""
    total = apps * per_app
    before = parse_target(_document(apps, per_app, frozenset()), DEVICE)
    after = parse_target(_document(apps, per_app, changed_services(total, changes)), DEVICE)
    return running(before), after


def with_target_images(current: CurrentState, target: TargetState) -> CurrentState:
    """`current` plus every image of `target` it lacks (the pulls of the first pass done)."""
    have = {ref for image in current.images for ref in image.refs}
    extra = [
        ImageState(id=f"sha256:{9:x}{svc.image_id:063x}", refs=ref, managed=True)
        for app in target.apps.values()
        if app.release is not None
        for svc in app.release.services.values()
        if not (ref := frozenset({normalize_image_ref(svc.image)})) <= have
    ]
    return replace(current, images=current.images + tuple(extra))


def _time(current: CurrentState, target: TargetState, iterations: int) -> dict[str, Any]:
    ctx = PlanContext()
    steps = plan(current, target, ctx).steps
    for _ in range(20):  # warm up
        plan(current, target, ctx)
    times: list[float] = []
    for _ in range(iterations):
        start = time.perf_counter()
        plan(current, target, ctx)
        times.append((time.perf_counter() - start) * 1000)
    kinds = Counter(type(step).__name__ for step in steps)
    return {"steps": dict(sorted(kinds.items())), "ms": summary(times, 3)}


def measure(iterations: int = 1000, services: int = 200, changes: int = 20) -> dict[str, Any]:
    """Time both passes that involve the changes: the first (images missing → pulls) and the
    second (images there → the changed containers killed, to be started on the next pass)."""
    apps = 4
    current, target = scenario(apps, services // apps, changes)
    return {
        "services": len(current.containers),
        "changed": changes,
        "iterations": iterations,
        "first_pass": _time(current, target, iterations),
        "after_pulls": _time(with_target_images(current, target), target, iterations),
    }
