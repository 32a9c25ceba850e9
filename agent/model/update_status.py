"""Update and service status vocabulary, spelled as the cloud expects on the wire."""

from __future__ import annotations

from enum import StrEnum


class UpdateStatus(StrEnum):
    REJECTED = "rejected"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    APPLYING_CHANGES = "applying changes"
    ABORTED = "aborted"
    DONE = "done"


# An update is settled when nothing more will happen to it without a new target: applied,
# refused or given up. The others are in progress. The one definition of both.
SETTLED: frozenset[UpdateStatus] = frozenset(
    {UpdateStatus.DONE, UpdateStatus.REJECTED, UpdateStatus.ABORTED}
)
IN_PROGRESS: frozenset[UpdateStatus] = frozenset(UpdateStatus) - SETTLED
FAILED: frozenset[UpdateStatus] = frozenset({UpdateStatus.REJECTED, UpdateStatus.ABORTED})


class ServiceStatus(StrEnum):
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    INSTALLING = "Installing"
    INSTALLED = "Installed"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    EXITED = "exited"
    DEAD = "Dead"
    HANDING_OVER = "Handing over"
    AWAITING_HANDOVER = "Awaiting handover"
