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
