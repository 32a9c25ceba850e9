"""A simulated engine for planner tests: `apply(state, step)` returns the engine state after the
step ran. Pure: no I/O, no clock; ids are derived from the inputs.

It is strict where a real engine would fail (starting without the image, a volume or a network,
killing a container that is gone, removing an image a container uses), so a planner bug shows
up as an AssertionError instead of a silently wrong state.

A service labelled `sim.exit-code` is a one-shot: once started it has exited with that code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

from agent.model import (
    ContainerState,
    ContainerStatus,
    CurrentState,
    ImageState,
    NetworkState,
    TargetState,
    VolumeState,
    normalize_image_ref,
)
from agent.model.current import container_name, network_engine_name, volume_engine_name
from agent.model.target import service_networks
from agent.reconcile.steps import (
    CreateNetwork,
    CreateVolume,
    Kill,
    Pull,
    RemoveImage,
    RemoveNetwork,
    Start,
    StartContainer,
    Step,
    StopContainer,
    UpdateMetadata,
)

EXIT_LABEL = "sim.exit-code"


def image_id_for(ref: str) -> str:
    return "sha256:" + hashlib.sha256(normalize_image_ref(ref).encode()).hexdigest()


def one_shots(target: TargetState) -> dict[str, int]:
    """config hash -> exit code of the target's one-shot services (for StartContainer, whose
    step carries the container only)."""
    return {
        s.config_hash(): int(s.labels[EXIT_LABEL])
        for app in target.apps.values()
        if app.release is not None
        for s in app.release.services.values()
        if EXIT_LABEL in s.labels
    }


def apply_all(
    state: CurrentState, steps: Sequence[Step], exits: Mapping[str, int] | None = None
) -> CurrentState:
    for step in steps:
        state = apply(state, step, exits)
    return state


def apply(state: CurrentState, step: Step, exits: Mapping[str, int] | None = None) -> CurrentState:
    """The engine state after `step`. `exits` maps config hashes of one-shot services to their
    exit code, so that starting an existing container of one makes it exit too."""
    match step:
        case Pull(image=ref):
            norm = normalize_image_ref(ref)
            image_id = image_id_for(ref)
            others = tuple(i for i in state.images if i.id != image_id)
            old = next((i for i in state.images if i.id == image_id), None)
            refs = (old.refs if old else frozenset()) | {norm}
            return replace(state, images=(*others, ImageState(image_id, refs, managed=True)))
        case CreateVolume(app=app, volume=vol):
            name = volume_engine_name(app.id, vol.name)
            assert name not in {v.name for v in state.volumes}, f"volume {name} exists"
            volume = VolumeState(name=name, app_id=app.id, app_uuid=app.uuid)
            return replace(state, volumes=(*state.volumes, volume))
        case CreateNetwork(app=app, network=net):
            name = network_engine_name(app.id, net.name)
            assert name not in {n.name for n in state.networks}, f"network {name} exists"
            network = NetworkState(name=name, id=f"net-{name}", app_id=app.id, app_uuid=app.uuid)
            return replace(state, networks=(*state.networks, network))
        case RemoveNetwork(name=name):
            assert name in {n.name for n in state.networks}, f"no network {name}"
            return replace(state, networks=tuple(n for n in state.networks if n.name != name))
        case RemoveImage(image_id=image_id):
            assert image_id in {i.id for i in state.images}, f"no image {image_id}"
            users = [c.id for c in state.containers if c.image_docker_id == image_id]
            assert not users, f"image {image_id} is used by {users} (engine would answer 409)"
            return replace(state, images=tuple(i for i in state.images if i.id != image_id))
        case Kill(container=c):
            _existing(state, c)
            return replace(state, containers=tuple(x for x in state.containers if x.id != c.id))
        case Start(app=app, service=svc):
            return replace(state, containers=(*state.containers, _create(state, step)))
        case StartContainer(container=c):
            code = (exits or {}).get(c.config_hash or "")
            if code is not None:
                return _update(state, c, status=ContainerStatus.EXITED, exit_code=code)
            return _update(state, c, status=ContainerStatus.RUNNING, exit_code=None)
        case StopContainer(container=c):
            return _update(state, c, status=ContainerStatus.EXITED, exit_code=0)
        case UpdateMetadata(container=c, app=app, service=svc):
            assert app.release is not None
            return _update(
                state,
                c,
                release_uuid=app.release.uuid,
                release_id=app.release.id,
                name=container_name(svc.name, svc.image_id, app.release.id, app.release.uuid),
            )
    raise AssertionError(f"unknown step {step!r}")


def _existing(state: CurrentState, c: ContainerState) -> ContainerState:
    found = next((x for x in state.containers if x.id == c.id), None)
    assert found is not None, f"container {c.id} is gone"
    return found


def _update(state: CurrentState, c: ContainerState, **changes: object) -> CurrentState:
    new = replace(_existing(state, c), **changes)  # type: ignore[arg-type]
    return replace(state, containers=tuple(new if x.id == c.id else x for x in state.containers))


def _create(state: CurrentState, step: Start) -> ContainerState:
    app, svc = step.app, step.service
    assert app.release is not None, "Start for an app without a release"
    image = state.image_for(svc.image)
    assert image is not None, f"Start of {svc.name} before {svc.image} was pulled"
    volumes = {v.name for v in state.volumes}
    for vol in svc.composition.named_volumes():
        assert volume_engine_name(app.id, vol) in volumes, f"{svc.name}: no volume {vol}"
    networks = {n.name for n in state.networks}
    for net in service_networks(svc):
        assert network_engine_name(app.id, net) in networks, f"{svc.name}: no network {net}"
    same = [c for c in state.containers if (c.app_uuid, c.service_name) == (app.uuid, svc.name)]
    if svc.update_strategy == "hand-over":
        # only hand-over starts a new container beside the old one, never beside its own twin
        same = [c for c in same if c.config_hash == svc.config_hash()]
    assert not same, f"Start of {svc.name} beside {[c.id for c in same]}"

    seq = 1 + max((_seq(c.created_at) for c in state.containers), default=0)
    status, exit_code = ContainerStatus.CREATED, None
    if svc.running:
        status = ContainerStatus.RUNNING
        if EXIT_LABEL in svc.labels:
            status, exit_code = ContainerStatus.EXITED, int(svc.labels[EXIT_LABEL])
    return ContainerState(
        id=f"sim-{seq:06d}",
        name=container_name(svc.name, svc.image_id, app.release.id, app.release.uuid),
        app_id=app.id,
        app_uuid=app.uuid,
        service_name=svc.name,
        service_id=svc.id,
        image_id=svc.image_id,
        release_uuid=app.release.uuid,
        release_id=app.release.id,
        image=svc.image,
        image_docker_id=image.id,
        config_hash=svc.config_hash(),
        status=status,
        health="healthy" if svc.composition.healthcheck is not None else None,
        exit_code=exit_code,
        created_at=f"{seq:06d}",
    )


def _seq(created_at: str) -> int:
    return int(created_at) if created_at.isdigit() else 0


class SimEngine:
    """Holds a CurrentState; `apply(step)` moves it on and returns the new state."""

    def __init__(self, state: CurrentState, target: TargetState | None = None) -> None:
        self.state = state
        self.exits = one_shots(target) if target is not None else {}

    def apply(self, step: Step) -> CurrentState:
        self.state = apply(self.state, step, self.exits)
        return self.state
