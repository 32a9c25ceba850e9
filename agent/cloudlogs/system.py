"""The agent's own lines for the dashboard, worded as the reference words them.

The agent's bus events (agent/events/kinds.py) are turned into the reference's system messages:
`humanName 'object'` with ` due to 'error'` (src/logging/index.ts:158-177 and the names in
src/lib/log-types.ts: "Downloading image", "Killing service", "Installing service", ...),
"Updates are locked ... Reason: ..." (src/device-state/index.ts:690-696), "Could not move to
new release: ..." (src/api-binder/index.ts:181-186), "Supervisor starting"
(src/supervisor.ts:75; channel.py says it once the stream is on), "Not running containers
because of contract violations: ..." (src/compose/application-manager.ts:833-841). A line
for an error has `isStdErr` (index.ts:117).
"""

from __future__ import annotations

from agent.events.kinds import (
    AppRejected,
    ContractServicesNotRun,
    ImageDownloaded,
    InsufficientDisk,
    Payload,
    PullFailed,
    PullStarted,
    ReleaseAborted,
    StepDone,
    StepFailed,
    StepStarted,
    UpdateLockHeld,
    UpdateLockOverridden,
    UpdateStatusChanged,
)
from agent.model.update_status import UpdateStatus

# the events that may make a line: what the cloud log channel subscribes to
KINDS: tuple[type[Payload], ...] = (
    StepStarted,
    StepDone,
    StepFailed,
    PullStarted,
    ImageDownloaded,
    PullFailed,
    InsufficientDisk,
    UpdateLockHeld,
    UpdateLockOverridden,
    AppRejected,
    ReleaseAborted,
    UpdateStatusChanged,
    ContractServicesNotRun,
)

# step kind (agent/reconcile/steps.StepKind's values; tests/unit/cloudlogs/test_system.py
# checks them) -> (started, done, failed) wording; "" and kinds not here: no line
STEPS: dict[str, tuple[str, str, str]] = {
    "kill": ("Killing service", "Killed service", "Failed to kill service"),
    "start": ("Installing service", "Installed service", "Failed to install service"),
    "start-container": ("Starting service", "Started service", "Failed to start service"),
    "stop-container": ("Stopping service", "Stopped service", "Failed to stop service"),
    "create-volume": ("Creating volume", "", "Error creating volume"),
    "create-network": ("Creating network", "", "Error creating network"),
    "remove-network": ("Removing network", "", "Error removing network"),
    "remove-image": ("Deleting image", "Deleted image", "Failed to delete image"),
}
_MIB = 1024 * 1024


def _step(event: StepStarted | StepDone | StepFailed) -> tuple[str, bool] | None:
    words = STEPS.get(event.kind)
    if words is None:
        return None
    phase = 2 if isinstance(event, StepFailed) else 1 if isinstance(event, StepDone) else 0
    if not words[phase]:
        return None
    # the executor names the service and its image: as the reference (objectNameForLogs)
    obj = f"{event.service} {event.image}" if event.service and event.image else event.target
    text = f"{words[phase]} '{obj}'"
    if isinstance(event, StepFailed):
        return text + f" due to '{event.error}'", True
    return text, False


def system_message(event: Payload) -> tuple[str, bool] | None:
    """(message, is an error) for an agent event the dashboard shows; None for the rest."""
    match event:
        case StepStarted() | StepDone() | StepFailed():
            return _step(event)
        case PullStarted(image=image):
            return f"Downloading image '{image}'", False
        case ImageDownloaded(image=image):
            return f"Downloaded image '{image}'", False
        case PullFailed(image=image, error=error):
            return f"Failed to download image '{image}' due to '{error}'", True
        case InsufficientDisk():
            return (
                f"Not enough disk to download image '{event.image}': it needs about "
                f"{event.download_bytes // _MIB} MiB, {event.free_bytes // _MIB}"
                " MiB are free; will retry",
                True,
            )
        case UpdateLockHeld(service=service, path=path):
            return (
                "Updates are locked, retrying when the lock is released. Reason: service "
                f"'{service}' holds the update lock ({path})",
                False,
            )
        case UpdateLockOverridden():
            return (
                "Update lock overridden (BALENA_SUPERVISOR_OVERRIDE_LOCK or a forced update)",
                False,
            )
        case AppRejected(app=app, reason=reason):
            return f"Could not move to new release: {app}: {reason}", True
        case ReleaseAborted(app=app, release=release, reason=reason):
            return f"Update of '{app}' to release {release} aborted: {reason}", True
        case UpdateStatusChanged(status=UpdateStatus.DONE, app=app, release_uuid=release):
            return f"Update of '{app}' to release {release} done", False
        case ContractServicesNotRun(services=services):
            return (
                "Not running containers because of contract violations: " + ". ".join(services),
                False,
            )
        case _:
            return None
