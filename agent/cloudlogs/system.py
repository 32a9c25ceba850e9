"""The agent's own lines for the dashboard, worded as the reference words them.

The agent's structlog events (stable names) are turned into the reference's system messages:
`humanName 'object'` with ` due to 'error'` (src/logging/index.ts:158-177 and the names in
src/lib/log-types.ts: "Downloading image", "Killing service", "Installing service", ...),
"Updates are locked ... Reason: ..." (src/device-state/index.ts:690-696), "Could not move to
new release: ..." (src/api-binder/index.ts:181-186), "Supervisor starting"
(src/supervisor.ts:75; channel.py says it once the stream is on), "Not running containers
because of contract violations: ..." (src/compose/application-manager.ts:833-841). A line
for an error has `isStdErr` (index.ts:117).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# step verb (agent/reconcile/executor.py describe()) -> (started, done, failed) wording
_STEPS: dict[str, tuple[str, str, str]] = {
    "kill": ("Killing service", "Killed service", "Failed to kill service"),
    "start": ("Starting service", "Started service", "Failed to start service"),
    "stop": ("Stopping service", "Stopped service", "Failed to stop service"),
    "create volume": ("Creating volume", "", "Error creating volume"),
    "create network": ("Creating network", "", "Error creating network"),
    "remove network": ("Removing network", "", "Error removing network"),
    "remove image": ("Deleting image", "Deleted image", "Failed to delete image"),
}
_STEP_PHASE = {"step_started": 0, "step_done": 1, "step_failed": 2}


def _step(
    event: str, step: str, error: str | None, service: Any, image: Any
) -> tuple[str, bool] | None:
    for verb, words in _STEPS.items():
        if not step.startswith(verb + " "):
            continue
        obj = step[len(verb) + 1 :]
        if service and image:  # the executor names the service and its image: as the reference
            obj = f"{service} {image}"
        if verb == "start" and "/" in obj:  # a new container: created, then started
            obj = obj.split("/", 1)[1]
            words = ("Installing service", "Installed service", "Failed to install service")
        elif verb == "remove image":
            obj = obj.split(" (", 1)[1].rstrip(")") if " (" in obj else obj
        phase = _STEP_PHASE[event]
        if not words[phase]:
            return None
        text = f"{words[phase]} '{obj}'"
        return (text + f" due to '{error}'", True) if phase == 2 else (text, False)
    return None


def system_message(event: Mapping[str, Any]) -> tuple[str, bool] | None:
    """(message, is an error) for an agent event the dashboard shows; None for the rest."""
    name = event.get("event")
    get = event.get
    if name in _STEP_PHASE:
        return _step(str(name), str(get("step", "")), get("error"), get("service"), get("image"))
    if name == "pull_started":
        return f"Downloading image '{get('image')}'", False
    if name == "pull_done":
        return f"Downloaded image '{get('image')}'", False
    if name == "pull_failed":
        return f"Failed to download image '{get('image')}' due to '{get('error')}'", True
    if name == "insufficient_disk":
        mib = 1024 * 1024
        return (
            f"Not enough disk to download image '{get('image')}': it needs about "
            f"{int(get('download_bytes') or 0) // mib} MiB, {int(get('free_bytes') or 0) // mib}"
            " MiB are free; will retry",
            True,
        )
    if name == "lock_held":
        return (
            f"Updates are locked, retrying when the lock is released. Reason: service "
            f"'{get('service')}' holds the update lock ({get('path')})",
            False,
        )
    if name == "lock_overridden":
        return "Update lock overridden (BALENA_SUPERVISOR_OVERRIDE_LOCK or a forced update)", False
    if name == "app_rejected":
        return f"Could not move to new release: {get('app')}: {get('reason')}", True
    if name == "release_aborted":
        return (
            f"Update of '{get('app')}' to release {get('release')} aborted: {get('reason')}",
            True,
        )
    if name == "update_status_changed" and get("status") == "done":
        return f"Update of '{get('app')}' to release {get('release')} done", False
    if name == "contract_services_not_run":
        services = get("services") or []
        return (
            "Not running containers because of contract violations: "
            + ". ".join(str(s) for s in services),
            False,
        )
    return None
