"""How the executor names a step: in its log events (`describe`, `subject`) and in its bus
events (`step_fields`: what the system lines read, agent/cloudlogs/system.py, api/syslines.py)."""

from __future__ import annotations

from typing import assert_never

from agent.model.current import network_engine_name, volume_engine_name
from agent.model.step_kind import StepKind
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


def describe(step: Step) -> str:
    match step:
        case Pull(image=image):
            return f"pull {image}"
        case Kill(container=c):
            return f"kill {c.name}"
        case Start(service=s, app=a):
            return f"start {a.name}/{s.name}"
        case StartContainer(container=c):
            return f"start {c.name}"
        case StopContainer(container=c):
            return f"stop {c.name}"
        case UpdateMetadata(container=c, app=a):
            return f"carry {c.name} into release {a.release_uuid}"
        case CreateVolume(volume=v, app=a):
            return f"create volume {volume_engine_name(a.id, v.name)}"
        case CreateNetwork(network=n, app=a):
            return f"create network {network_engine_name(a.id, n.name)}"
        case RemoveNetwork(name=name):
            return f"remove network {name}"
        case RemoveImage(image_id=image_id, refs=refs):
            return f"remove image {image_id[:19]} ({', '.join(refs) or 'untagged'})"
        case _:
            assert_never(step)


def target(step: Step) -> str:
    """What a step acts on, as the system lines name it when they have no service and image."""
    match step:
        case Pull(image=image):
            return image
        case (
            Kill(container=c)
            | StartContainer(container=c)
            | StopContainer(container=c)
            | UpdateMetadata(container=c)
        ):
            return c.name
        case Start(service=s):
            return s.name
        case CreateVolume(volume=v, app=a):
            return volume_engine_name(a.id, v.name)
        case CreateNetwork(network=n, app=a):
            return network_engine_name(a.id, n.name)
        case RemoveNetwork(name=name):
            return name
        case RemoveImage(refs=refs):
            return ", ".join(refs) or "untagged"
        case _:
            assert_never(step)


def subject(step: Step) -> dict[str, str]:
    """The service and image a step acts on, for the cloud's system lines (the reference names
    a service "<service name> <image>", src/logging/index.ts objectNameForLogs)."""
    match step:
        case Kill(container=c) | StartContainer(container=c) | StopContainer(container=c):
            return {"service": c.service_name, "image": c.image_docker_id or c.image}
        case (
            Pull()
            | RemoveImage()
            | CreateVolume()
            | CreateNetwork()
            | RemoveNetwork()
            | Start()
            | UpdateMetadata()
        ):
            return {}
        case _:
            assert_never(step)


def step_fields(step: Step) -> tuple[StepKind, str, str, str | None, str | None]:
    """A step event's fields: kind, description, target, service, image."""
    named = subject(step)
    return step.kind, describe(step), target(step), named.get("service"), named.get("image")
