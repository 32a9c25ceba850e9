"""What of a target the agent accepts but never runs as a container, and why.

As the reference supervisor does (balena-os/balena-supervisor: src/compose/app.ts
`fromTargetState`, src/lib/supervisor-metadata.ts):

- a **host app** (`is_host: true`) is balenaOS itself: its images (`io.balena.image.class:
  hostapp`, `hostapp-extension`, `io.balena.image.store: root`) are installed by the host OS, not
  run by the supervisor. None of its services run here (the reference would run a plain
  `service`/`data` one; balena's host apps have none). It is not in the cloud report (the
  reference reports no service of it) and the local API lists it as `done` with no services.
- an image of class `hostapp` or `hostapp-extension` in any other app is not run either (it is an
  OS image or a filesystem overlay with no command; the reference would try to run it).
- the **supervisor's own service**: an app of one of balena's supervisor app uuids (the same in
  every balena environment) and a service named `main`, `balena-supervisor` or `core`. The
  supervisor cannot update itself; the reference leaves it out and reports it `Running`.

`split_app` (agent/model/parse.py) applies these rules while the target is parsed: the app's
release keeps only the services that run, the others are listed in `AppSpec.skipped`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

SUPERVISOR_SERVICE_NAMES = frozenset({"main", "balena-supervisor", "core"})
# balena's supervisor apps, one per architecture, the same uuids on balena-cloud.com, staging and
# openBalena (supervisor-metadata.ts)
SUPERVISOR_APP_UUIDS = frozenset(
    {
        "52e35121417640b1b28a680504e4039b",  # amd64
        "900de4f3cbac4b9bbd232885a35e407b",  # aarch64
        "2e66a95795c149959c69472a8c2f92b8",  # armv7hf
        "531b357e155c480cbec0fdd33041a1f5",  # i386
        "6822565f766e413e96d9bebe2227cdcc",  # rpi
    }
)
HOSTAPP_CLASSES = frozenset({"hostapp", "hostapp-extension"})
CLASS_LABELS = ("io.balena.image.class", "io.resin.image.class")
STORE_LABELS = ("io.balena.image.store", "io.resin.image.store")


class SkipReason(StrEnum):
    HOST_APP = "host_app"
    HOSTAPP_IMAGE = "hostapp_image"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class SkippedService:
    name: str
    image: str
    reason: SkipReason
    detail: str  # for the log and the local API


def is_supervisor(app_uuid: str, service_name: str) -> bool:
    """The reference's rule: one of balena's supervisor apps, a supervisor service name."""
    return app_uuid in SUPERVISOR_APP_UUIDS and service_name in SUPERVISOR_SERVICE_NAMES


def _label(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    return next((labels[k] for k in keys if k in labels), None)


def image_class(labels: Mapping[str, str]) -> str | None:
    return _label(labels, CLASS_LABELS)


def service_skip(
    app_uuid: str, name: str, labels: Mapping[str, str]
) -> tuple[SkipReason, str] | None:
    """Why a service of a (non-host) app is not run, or None when it runs."""
    if is_supervisor(app_uuid, name):
        return SkipReason.SUPERVISOR, "the supervisor's own service: the agent takes its place"
    klass = image_class(labels)
    if klass in HOSTAPP_CLASSES:
        return (
            SkipReason.HOSTAPP_IMAGE,
            f"image of class {klass}: installed by the host OS, not run as a container",
        )
    return None


def host_app_services(raw_app: Any) -> tuple[SkippedService, ...]:
    """The services of a host app's release, read leniently (nothing of it is run or checked:
    a value the agent could not run never rejects the host OS's own app)."""
    releases = raw_app.get("releases") if isinstance(raw_app, dict) else None
    release = next(iter(releases.values()), None) if isinstance(releases, dict) else None
    services = release.get("services") if isinstance(release, dict) else None
    out = []
    for name, raw in sorted((services or {}).items()) if isinstance(services, dict) else ():
        raw = raw if isinstance(raw, dict) else {}
        comp = raw.get("composition")
        labels = {
            **_strs(comp.get("labels") if isinstance(comp, dict) else None),
            **_strs(raw.get("labels")),
        }
        image = raw.get("image")
        klass, store = image_class(labels), _label(labels, STORE_LABELS)
        kind = f"class {klass or 'service'}, store {store or 'data'}"
        out.append(
            SkippedService(
                name=str(name),
                image=image.strip() if isinstance(image, str) else "",
                reason=SkipReason.HOST_APP,
                detail=f"host app (balenaOS, {kind}): installed by the host OS, not run",
            )
        )
    return tuple(out)


def _strs(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class _Release(Protocol):
    @property
    def services(self) -> Mapping[str, object]: ...


class SkippingApp(Protocol):
    """What the skip events read of an app (agent/model/target.py `AppSpec`)."""

    @property
    def name(self) -> str: ...
    @property
    def uuid(self) -> str: ...
    @property
    def release_uuid(self) -> str | None: ...
    @property
    def is_host(self) -> bool: ...
    @property
    def release(self) -> _Release | None: ...
    @property
    def skipped(self) -> tuple[SkippedService, ...]: ...


def skip_events(app: SkippingApp) -> list[dict[str, Any]]:
    """One `app_skipped` log event per reason an app has services the agent does not run."""
    if app.is_host:
        return [
            {
                "app": app.name,
                "app_uuid": app.uuid,
                "release": app.release_uuid,
                "reason": str(SkipReason.HOST_APP),
                "services": [s.name for s in app.skipped],
                "whole_app": True,
                "detail": "host app (balenaOS): installed by the host OS, not run as containers",
            }
        ]
    by_reason: dict[SkipReason, list[SkippedService]] = {}
    for s in app.skipped:
        by_reason.setdefault(s.reason, []).append(s)
    runs = app.release is not None and bool(app.release.services)
    return [
        {
            "app": app.name,
            "app_uuid": app.uuid,
            "release": app.release_uuid,
            "reason": str(reason),
            "services": [s.name for s in items],
            "whole_app": not runs,
            "detail": items[0].detail,
        }
        for reason, items in sorted(by_reason.items())
    ]


def not_run_reason(app: SkippingApp) -> str:
    """Why nothing of an app is run (`runs_nothing`), for its status."""
    events = skip_events(app)
    return "; ".join(f"not run: {e['detail']}" for e in events) or "not run"
