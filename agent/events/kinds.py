"""Every event the agent's components tell each other about: one `Event` name and one frozen
payload type each (the payload's `EVENT`). Subscribers pick events by payload type."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from agent.config import FleetConfig
from agent.model.device_status import StatusView
from agent.model.update_status import UpdateStatus


class Event(StrEnum):
    STATUS_CHANGED = "status_changed"
    UPDATE_STATUS_CHANGED = "update_status_changed"
    POLL_DONE = "poll_done"
    REPORT_FAILED = "report_failed"
    DEVICE_FIELDS_CHANGED = "device_fields_changed"
    DEVICE_STATUS_CHANGED = "device_status_changed"
    FLEET_CONFIG_CHANGED = "fleet_config_changed"
    PULL_STARTED = "pull_started"
    DOWNLOAD_PROGRESS = "download_progress"
    UPDATE_LOCK_HELD = "update_lock_held"
    UPDATE_LOCK_RELEASED = "update_lock_released"
    UPDATE_LOCK_OVERRIDDEN = "update_lock_overridden"
    IMAGE_DOWNLOADED = "image_downloaded"
    PULL_FAILED = "pull_failed"
    INSUFFICIENT_DISK = "insufficient_disk"
    STEP_STARTED = "step_started"
    STEP_DONE = "step_done"
    STEP_FAILED = "step_failed"
    TARGET_ACCEPTED = "target_accepted"
    APP_REJECTED = "app_rejected"
    CONTRACT_SERVICES_NOT_RUN = "contract_services_not_run"
    RELEASE_ABORTED = "release_aborted"
    APP_ACTION_TAKEN = "app_action_taken"
    SERVICE_ACTION_TAKEN = "service_action_taken"


@dataclass(frozen=True)
class StatusChanged:
    """Something on the status board changed (an update status, a service, download progress,
    the heartbeat): the reporter builds a report."""

    EVENT: ClassVar[Event] = Event.STATUS_CHANGED


@dataclass(frozen=True)
class UpdateStatusChanged:
    """One step of an app's update-status chain (skipped stages are published too, in order)."""

    EVENT: ClassVar[Event] = Event.UPDATE_STATUS_CHANGED
    app_uuid: str
    release_uuid: str | None
    status: UpdateStatus
    previous: UpdateStatus | None
    at: float  # unix time
    app: str = ""  # the app's name
    reason: str | None = None  # why it is where it is (shown on the dashboard)


@dataclass(frozen=True)
class PollDone:
    """A target-state poll finished: `ok` (the cloud answered; the heartbeat), `new_target`
    (it brought a changed document, usable or not), `error` (why it failed)."""

    EVENT: ClassVar[Event] = Event.POLL_DONE
    ok: bool
    new_target: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ReportFailed:
    EVENT: ClassVar[Event] = Event.REPORT_FAILED
    error: str


@dataclass(frozen=True)
class DeviceFieldsChanged:
    """A reported device field changed outside the status board (the API key was rotated)."""

    EVENT: ClassVar[Event] = Event.DEVICE_FIELDS_CHANGED


@dataclass(frozen=True)
class DeviceStatusChanged:
    """The device status the dashboard shows changed (not only the seconds in its reason)."""

    EVENT: ClassVar[Event] = Event.DEVICE_STATUS_CHANGED
    view: StatusView
    heartbeat_ok: bool
    cloudlink_ok: bool


@dataclass(frozen=True)
class FleetConfigChanged:
    """The fleet's config vars in force changed (e.g. SUPERVISOR_LOG_CONTROL flipped)."""

    EVENT: ClassVar[Event] = Event.FLEET_CONFIG_CHANGED
    config: FleetConfig


@dataclass(frozen=True)
class PullStarted:
    """An image pull (or a retry of it) begins: its download starts from zero bytes."""

    EVENT: ClassVar[Event] = Event.PULL_STARTED
    image: str
    services: tuple[str, ...] = ()  # the services waiting for it


@dataclass(frozen=True)
class DownloadProgress:
    EVENT: ClassVar[Event] = Event.DOWNLOAD_PROGRESS
    app_uuid: str
    image: str
    percent: int
    nbytes: int  # downloaded so far in this pull


@dataclass(frozen=True)
class UpdateLockHeld:
    """An app's update lock is seen held (by one of its services)."""

    EVENT: ClassVar[Event] = Event.UPDATE_LOCK_HELD
    app_id: int
    service: str
    path: str = ""  # the lock file (or what is at its name)


@dataclass(frozen=True)
class UpdateLockReleased:
    EVENT: ClassVar[Event] = Event.UPDATE_LOCK_RELEASED
    app_id: int


@dataclass(frozen=True)
class UpdateLockOverridden:
    """A forced update (or BALENA_SUPERVISOR_OVERRIDE_LOCK) removed a service's update lock."""

    EVENT: ClassVar[Event] = Event.UPDATE_LOCK_OVERRIDDEN
    app_id: int
    service: str
    path: str


@dataclass(frozen=True)
class ImageDownloaded:
    EVENT: ClassVar[Event] = Event.IMAGE_DOWNLOADED
    image: str
    image_id: str  # the engine's id


@dataclass(frozen=True)
class PullFailed:
    EVENT: ClassVar[Event] = Event.PULL_FAILED
    image: str
    error: str


@dataclass(frozen=True)
class InsufficientDisk:
    """A pull refused before it starts: the engine's disk has no room for the image."""

    EVENT: ClassVar[Event] = Event.INSUFFICIENT_DISK
    image: str
    download_bytes: int
    free_bytes: int
    path: str  # the engine's data root


@dataclass(frozen=True)
class _Step:
    kind: str  # the step's kind: an agent.reconcile.steps.StepKind (a StrEnum)
    step: str  # the step as the log names it ("kill main_1_1_r1", "start demo/main", ...)
    target: str  # what it acts on: a container, volume or network name, a service, images' refs
    service: str | None  # the service and image the reference names it by, when it has them
    image: str | None


@dataclass(frozen=True)
class StepStarted(_Step):
    """An apply step (not a pull: PullStarted) begins."""

    EVENT: ClassVar[Event] = Event.STEP_STARTED


@dataclass(frozen=True)
class StepDone(_Step):
    EVENT: ClassVar[Event] = Event.STEP_DONE


@dataclass(frozen=True)
class StepFailed(_Step):
    EVENT: ClassVar[Event] = Event.STEP_FAILED
    error: str


@dataclass(frozen=True)
class TargetAccepted:
    """A target document was validated and handed to the apply loop."""

    EVENT: ClassVar[Event] = Event.TARGET_ACCEPTED
    source: str  # agent.model.source.TargetSource
    apps: tuple[str, ...]  # the apps' names, sorted


@dataclass(frozen=True)
class AppRejected:
    """An app of an accepted target can't be applied (invalid, or its contract unmet)."""

    EVENT: ClassVar[Event] = Event.APP_REJECTED
    app: str
    app_uuid: str
    release: str | None
    reason: str


@dataclass(frozen=True)
class ContractServicesNotRun:
    """Optional services of an app whose contracts the device doesn't meet: not run."""

    EVENT: ClassVar[Event] = Event.CONTRACT_SERVICES_NOT_RUN
    app: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseAborted:
    """The agent gave up on a release (pulls failing; a release failing its probation)."""

    EVENT: ClassVar[Event] = Event.RELEASE_ABORTED
    app: str
    release: str
    reason: str
    rollback_to: str | None = None  # the release rolled back to, if any


@dataclass(frozen=True)
class AppActionTaken:
    """The local API restarts or purges an app."""

    EVENT: ClassVar[Event] = Event.APP_ACTION_TAKEN
    action: str  # restart | purge
    app_id: int
    app: str
    force: bool


@dataclass(frozen=True)
class ServiceActionTaken:
    """The local API restarts, stops or starts a service's container."""

    EVENT: ClassVar[Event] = Event.SERVICE_ACTION_TAKEN
    action: str  # restart | stop | start
    app_id: int
    service: str


Payload = (
    StatusChanged
    | UpdateStatusChanged
    | PollDone
    | ReportFailed
    | DeviceFieldsChanged
    | DeviceStatusChanged
    | FleetConfigChanged
    | PullStarted
    | DownloadProgress
    | UpdateLockHeld
    | UpdateLockReleased
    | UpdateLockOverridden
    | ImageDownloaded
    | PullFailed
    | InsufficientDisk
    | StepStarted
    | StepDone
    | StepFailed
    | TargetAccepted
    | AppRejected
    | ContractServicesNotRun
    | ReleaseAborted
    | AppActionTaken
    | ServiceActionTaken
)
