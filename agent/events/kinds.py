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


@dataclass(frozen=True)
class UpdateLockReleased:
    EVENT: ClassVar[Event] = Event.UPDATE_LOCK_RELEASED
    app_id: int


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
)
