"""The agent's own lines in `/v2/local/logs` (`isSystem`): what a developer watching
`balena push` output wants to see, from the agent's bus events — "<what>: key=value ...", the
keys and their order those of the matching log event."""

from __future__ import annotations

from collections.abc import Iterable

from agent.events.kinds import (
    AppActionTaken,
    ImageDownloaded,
    Payload,
    PullFailed,
    PullStarted,
    ServiceActionTaken,
    StepFailed,
    StepStarted,
    TargetAccepted,
    UpdateStatusChanged,
)

# the events that make a line: what the log hub subscribes to
KINDS: tuple[type[Payload], ...] = (
    TargetAccepted,
    UpdateStatusChanged,
    PullStarted,
    ImageDownloaded,
    PullFailed,
    StepStarted,
    StepFailed,
    AppActionTaken,
    ServiceActionTaken,
)


def _line(what: str, fields: Iterable[tuple[str, object]]) -> str:
    details = " ".join(f"{k}={v}" for k, v in fields)
    return f"{what}: {details}" if what else details


def _step(event: StepStarted | StepFailed) -> list[tuple[str, object]]:
    fields: list[tuple[str, object]] = [("step", event.step), ("kind", event.kind)]
    if isinstance(event, StepFailed):
        fields.append(("error", event.error))
    if event.service and event.image:
        fields += [("service", event.service), ("image", event.image)]
    return fields


def local_line(event: Payload) -> str | None:
    """The line for `event`; None for an event the local log doesn't show."""
    match event:
        case TargetAccepted():
            return _line(
                "target state accepted", [("source", event.source), ("apps", list(event.apps))]
            )
        case UpdateStatusChanged():
            previous = event.previous.value if event.previous is not None else None
            return _line(
                "update status",
                [
                    ("app", event.app),
                    ("app_uuid", event.app_uuid),
                    ("release", event.release_uuid),
                    ("previous", previous),
                    ("status", event.status.value),
                    ("since", event.at),
                    ("reason", event.reason),
                ],
            )
        case PullStarted():
            return _line(
                "downloading image", [("image", event.image), ("services", list(event.services))]
            )
        case ImageDownloaded():
            return _line(
                "downloaded image", [("image", event.image), ("image_id", event.image_id[:19])]
            )
        case PullFailed():
            return _line("download failed", [("image", event.image), ("error", event.error)])
        case StepStarted():
            return _line("", _step(event))
        case StepFailed():
            return _line("failed", _step(event))
        case AppActionTaken():
            return _line(
                "app action",
                [
                    ("action", event.action),
                    ("app_id", event.app_id),
                    ("app", event.app),
                    ("force", event.force),
                ],
            )
        case ServiceActionTaken():
            return _line(
                "service action",
                [("action", event.action), ("app_id", event.app_id), ("service", event.service)],
            )
        case _:
            return None
