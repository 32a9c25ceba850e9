"""The agent's data model: the target (what the cloud asks for), the current state (what the
engine has) and the update status vocabulary. Pure data, no I/O."""

from agent.model.current import (
    ContainerState,
    ContainerStatus,
    CurrentState,
    ImageState,
    NetworkState,
    VolumeState,
    normalize_image_ref,
)
from agent.model.parse import parse_target
from agent.model.target import (
    AppSpec,
    Composition,
    Healthcheck,
    NetworkSpec,
    ReleaseSpec,
    ServiceSpec,
    TargetState,
    VolumeSpec,
)
from agent.model.update_status import ServiceStatus, UpdateStatus

__all__ = [
    "AppSpec",
    "Composition",
    "ContainerState",
    "ContainerStatus",
    "CurrentState",
    "Healthcheck",
    "ImageState",
    "NetworkSpec",
    "NetworkState",
    "ReleaseSpec",
    "ServiceSpec",
    "ServiceStatus",
    "TargetState",
    "UpdateStatus",
    "VolumeSpec",
    "VolumeState",
    "normalize_image_ref",
    "parse_target",
]
