"""Steps: the planner's output and the executor's input. Each step is one engine action.

The planner returns the steps that can run *now*, given the current state; the executor runs
them (pulls concurrently, the rest in order), reads the engine again and asks the planner for
the next batch, until a pass yields no steps. That loop survives crashes by construction: after
a restart the next pass simply starts from what the engine has.

A step is named here too: in the log events (`describe`, `subject`) and in the bus events
(`step_fields`, what the system lines read: agent/cloudlogs/system.py, agent/api/syslines.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, assert_never

from agent.model import AppSpec, ContainerState, NetworkSpec, ServiceSpec, UpdateStatus, VolumeSpec
from agent.model.current import network_engine_name, volume_engine_name


class StepKind(StrEnum):
    """What a step does, as its log events name it (`kind`)."""

    PULL = "pull"
    REMOVE_IMAGE = "remove-image"
    CREATE_VOLUME = "create-volume"
    CREATE_NETWORK = "create-network"
    REMOVE_NETWORK = "remove-network"
    KILL = "kill"
    START = "start"
    START_CONTAINER = "start-container"
    STOP_CONTAINER = "stop-container"
    UPDATE_METADATA = "update-metadata"


@dataclass(frozen=True)
class Pull:
    kind: ClassVar[StepKind] = StepKind.PULL
    image: str
    app_uuid: str
    services: tuple[str, ...]  # the services of that app waiting for this image


@dataclass(frozen=True)
class RemoveImage:
    kind: ClassVar[StepKind] = StepKind.REMOVE_IMAGE
    image_id: str  # by id, never by name: two releases may share one repository
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateVolume:
    kind: ClassVar[StepKind] = StepKind.CREATE_VOLUME
    app: AppSpec
    volume: VolumeSpec


@dataclass(frozen=True)
class CreateNetwork:
    kind: ClassVar[StepKind] = StepKind.CREATE_NETWORK
    app: AppSpec
    network: NetworkSpec


@dataclass(frozen=True)
class RemoveNetwork:
    kind: ClassVar[StepKind] = StepKind.REMOVE_NETWORK
    name: str
    app_uuid: str | None


@dataclass(frozen=True)
class Kill:
    """Stop and remove a container (an old release's, a removed service's, a duplicate)."""

    kind: ClassVar[StepKind] = StepKind.KILL

    container: ContainerState
    remove_image: bool = False  # delete-then-download: also drop its image right away


@dataclass(frozen=True)
class Start:
    """Create a container for a target service and start it (unless the target says not to)."""

    kind: ClassVar[StepKind] = StepKind.START

    app: AppSpec
    service: ServiceSpec


@dataclass(frozen=True)
class StartContainer:
    """Start an existing container that should run but doesn't."""

    kind: ClassVar[StepKind] = StepKind.START_CONTAINER

    container: ContainerState


@dataclass(frozen=True)
class StopContainer:
    """Stop (not remove) a container whose target says `running: false`."""

    kind: ClassVar[StepKind] = StepKind.STOP_CONTAINER

    container: ContainerState


@dataclass(frozen=True)
class UpdateMetadata:
    """Carry an unchanged container over to a new release without restarting it."""

    kind: ClassVar[StepKind] = StepKind.UPDATE_METADATA

    container: ContainerState
    app: AppSpec
    service: ServiceSpec


Step = (
    Pull
    | RemoveImage
    | CreateVolume
    | CreateNetwork
    | RemoveNetwork
    | Kill
    | Start
    | StartContainer
    | StopContainer
    | UpdateMetadata
)

# steps that touch an app's containers: these need the app unlocked
CONTAINER_STEPS = (Kill, Start, StartContainer, StopContainer, UpdateMetadata)


def step_app_id(step: Step) -> int | None:
    """The app whose containers a step stops or starts (None for other steps)."""
    match step:
        case Start(app=app) | UpdateMetadata(app=app):
            return app.id
        case Kill(container=c) | StartContainer(container=c) | StopContainer(container=c):
            return c.app_id
        case Pull() | RemoveImage() | CreateVolume() | CreateNetwork() | RemoveNetwork():
            return None
        case _:
            assert_never(step)


def step_service(step: Step) -> str | None:
    """The service whose container a step stops or starts."""
    match step:
        case Start(service=svc):
            return svc.name
        case (
            Kill(container=c)
            | StartContainer(container=c)
            | StopContainer(container=c)
            | UpdateMetadata(container=c)
        ):
            return c.service_name
        case Pull() | RemoveImage() | CreateVolume() | CreateNetwork() | RemoveNetwork():
            return None
        case _:
            assert_never(step)


@dataclass(frozen=True)
class AppPlan:
    """What the planner concluded about one target app on this pass."""

    app_uuid: str
    release_uuid: str | None
    status: UpdateStatus
    missing_images: tuple[str, ...] = ()
    blocked_by_lock: bool = False  # downloaded, waiting for a lock to go away
    waiting_on: tuple[str, ...] = ()  # human-readable reasons nothing can happen yet
    reason: str | None = None  # for rejected / aborted / held
    held: bool = False  # downloaded, held by the update window (`PlanContext.hold_apply`)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    apps: dict[str, AppPlan] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return not self.steps and not any(
            a.waiting_on or a.blocked_by_lock or a.held for a in self.apps.values()
        )


@dataclass(frozen=True)
class PlanContext:
    """Everything besides current and target that the planner decides on."""

    locked_apps: frozenset[int] = frozenset()  # app ids whose update lock an app holds
    force: bool = False  # lock override (fleet var or a forced update)
    aborted: dict[str, str] = field(default_factory=dict)  # release uuid -> reason given up
    cleanup_images: bool = True  # remove unused managed images once every app is done
    now: float = 0.0  # wall clock of this pass (hand-over timeouts); the planner reads no clock
    handover_done: frozenset[tuple[int, str]] = frozenset()  # (app id, service) signalled
    # why no new release may be applied now (update window, agent/reconcile/window_gate.py);
    # an apply already under way (a container of the target release exists) goes on
    hold_apply: str | None = None
    hold_exempt: frozenset[str] = frozenset()  # app uuids never held: a rollback in progress
    # image refs never removed as unused: the previous release's, while the new one is on
    # probation (agent/reconcile/rollback.py)
    keep_images: frozenset[str] = frozenset()


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
