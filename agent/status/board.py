"""The one source of truth for "what is the device doing".

Holds each app's update status (with the time of its latest change, persisted), its services'
statuses and download progress, and the heartbeat. The reporter, the local API, the CLI and
metrics all read it; none computes its own view.

Every update-status transition is queued for the reporter in order — the dashboard's "update
status duration" needs each one — and when a pass skips a stage (downloading straight to
applying changes) the skipped stage is recorded too, so the cloud always sees the full chain.

It tells the rest of the agent on the bus: `UpdateStatusChanged` for each step of the chain
(metrics time the update; the connectivity monitor re-derives the device status),
`StatusChanged` for any change the reporter should send.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from agent.events.bus import Bus
from agent.events.kinds import StatusChanged, UpdateStatusChanged
from agent.model import ServiceStatus, UpdateStatus
from agent.model.update_status import IN_PROGRESS
from agent.store import LatestWriter, Store

log = structlog.get_logger("agent.status")

CHAIN = (
    UpdateStatus.DOWNLOADING,
    UpdateStatus.DOWNLOADED,
    UpdateStatus.APPLYING_CHANGES,
    UpdateStatus.DONE,
)
STORE_KEY = "status"


@dataclass(frozen=True)
class ServiceView:
    image: str
    status: ServiceStatus | str
    download_progress: int | None = None


@dataclass(frozen=True)
class AppView:
    app_uuid: str
    app_id: int
    name: str
    release_uuid: str | None  # the target release
    current_release_uuid: str | None  # the release running, until the target one is done
    update_status: UpdateStatus | None
    since: float  # unix time of the latest update-status change
    reason: str | None = None
    services: dict[str, ServiceView] = field(default_factory=dict)
    lock_service: str | None = None  # the service holding the app's update lock
    lock_since: float | None = None
    # a host app (balenaOS): accepted, not run, not in the cloud report (as the reference)
    host_app: bool = False
    # nothing of the app runs here (a host app, the supervisor's own): it has no containers
    runs_nothing: bool = False


@dataclass(frozen=True)
class Transition:
    app_uuid: str
    release_uuid: str | None
    status: UpdateStatus
    at: float
    seq: int


def expand_transition(old: UpdateStatus | None, new: UpdateStatus) -> list[UpdateStatus]:
    """The statuses to record when going from `old` to `new` within one release."""
    if old in CHAIN and new in CHAIN and old is not UpdateStatus.DONE:
        i, j = CHAIN.index(old), CHAIN.index(new)
        if j > i:
            return list(CHAIN[i + 1 : j + 1])
    return [new]


class StatusBoard:
    def __init__(self, store: Store, bus: Bus | None = None, clock: Any = time.time) -> None:
        """`bus`: where changes are published (a bus of its own when nobody listens)."""
        self._store = store
        self._bus = bus if bus is not None else Bus()
        self._clock = clock
        self.apps: dict[str, AppView] = {}
        self.last_poll: float | None = None  # the heartbeat: last successful target fetch
        self.last_poll_error: str | None = None
        self.last_report: float | None = None
        self.last_report_error: str | None = None
        self.target_error: str | None = None
        self.config_errors: list[str] = []
        self.transitions: deque[Transition] = deque()
        self._seq = 0
        self._writer = LatestWriter(
            store, STORE_KEY, lambda exc: log.error("status_persist_failed", error=str(exc))
        )
        self._load()

    # --- persistence --------------------------------------------------------------------------

    def _load(self) -> None:
        saved = self._store.get(STORE_KEY, {}) or {}
        for uuid, raw in (saved.get("apps") or {}).items():
            try:
                status = UpdateStatus(raw["update_status"]) if raw.get("update_status") else None
                self.apps[uuid] = AppView(
                    app_uuid=uuid,
                    app_id=int(raw.get("app_id", 0)),
                    name=str(raw.get("name", uuid)),
                    release_uuid=raw.get("release_uuid"),
                    current_release_uuid=raw.get("current_release_uuid"),
                    update_status=status,
                    since=float(raw.get("since", 0.0)),
                    reason=raw.get("reason"),
                    host_app=bool(raw.get("host_app", False)),
                    runs_nothing=bool(raw.get("runs_nothing", False)),
                )
            except (KeyError, ValueError, TypeError):
                log.warning("status_entry_ignored", app_uuid=uuid)
        self.last_poll = saved.get("last_poll")

    def _persist(self) -> None:
        data = {
            "apps": {
                uuid: {
                    "app_id": a.app_id,
                    "name": a.name,
                    "release_uuid": a.release_uuid,
                    "current_release_uuid": a.current_release_uuid,
                    "update_status": a.update_status.value if a.update_status else None,
                    "since": a.since,
                    "reason": a.reason,
                    "host_app": a.host_app,
                    "runs_nothing": a.runs_nothing,
                }
                for uuid, a in self.apps.items()
            },
            "last_poll": self.last_poll,
        }
        self._writer.write(data)  # off the event loop (a background write)

    async def flush(self) -> None:
        """Wait until the latest status is on disk (shutdown)."""
        await self._writer.flush()

    def _notify(self) -> None:
        self._bus.publish(StatusChanged())

    # --- writers ------------------------------------------------------------------------------

    def ensure_app(
        self,
        app_uuid: str,
        app_id: int,
        name: str,
        release_uuid: str | None,
        host_app: bool | None = None,  # None: as it was (False for a new app)
        runs_nothing: bool | None = None,
    ) -> None:
        view = self.apps.get(app_uuid)
        if view is None:
            self.apps[app_uuid] = AppView(
                app_uuid=app_uuid,
                app_id=app_id,
                name=name,
                release_uuid=release_uuid,
                current_release_uuid=None,
                update_status=None,
                since=self._clock(),
                host_app=bool(host_app),
                runs_nothing=bool(runs_nothing),
            )
            return
        host_app = view.host_app if host_app is None else host_app
        runs_nothing = view.runs_nothing if runs_nothing is None else runs_nothing
        if (view.app_id, view.name, view.host_app, view.runs_nothing) != (
            app_id,
            name,
            host_app,
            runs_nothing,
        ):  # a new release: set_update_status
            self.apps[app_uuid] = replace(
                view, app_id=app_id, name=name, host_app=host_app, runs_nothing=runs_nothing
            )
            self._persist()

    def forget_apps(self, keep: set[str]) -> None:
        gone = [uuid for uuid in self.apps if uuid not in keep]
        for uuid in gone:
            del self.apps[uuid]
        if gone:
            self._persist()
            self._notify()

    def set_update_status(
        self,
        app_uuid: str,
        release_uuid: str | None,
        status: UpdateStatus,
        reason: str | None = None,
    ) -> None:
        view = self.apps[app_uuid]
        same_release = view.release_uuid == release_uuid
        if same_release and view.update_status is status:
            if reason != view.reason:
                self.apps[app_uuid] = replace(view, reason=reason)
                self._persist()
                self._notify()
            return
        old = view.update_status if same_release else None
        now = self._clock()
        published: list[UpdateStatusChanged] = []
        for step in expand_transition(old, status):
            self._seq += 1
            self.transitions.append(Transition(app_uuid, release_uuid, step, now, self._seq))
            log.info(
                "update_status_changed",
                app=view.name,
                app_uuid=app_uuid,
                release=release_uuid,
                previous=(view.update_status.value if view.update_status else None),
                status=step.value,
                since=now,
                reason=reason,
            )
            published.append(
                UpdateStatusChanged(
                    app_uuid, release_uuid, step, view.update_status, now, view.name, reason
                )
            )
            view = replace(view, update_status=step)
        current = view.current_release_uuid
        if status is UpdateStatus.DONE:
            current = release_uuid
        services = view.services if same_release else {}
        self.apps[app_uuid] = replace(
            view,
            release_uuid=release_uuid,
            update_status=status,
            since=now,
            reason=reason,
            current_release_uuid=current,
            services=services,
        )
        self._persist()
        for event in published:  # once the board shows the new status
            self._bus.publish(event)
        self._notify()

    def set_reason(self, app_uuid: str, reason: str | None) -> None:
        """Why the app is where it is (e.g. an apply pass failed), its status unchanged."""
        view = self.apps.get(app_uuid)
        if view is None or view.reason == reason:
            return
        self.apps[app_uuid] = replace(view, reason=reason)
        self._persist()
        self._notify()

    def set_current_release(
        self, app_uuid: str, release_uuid: str | None, *, overwrite: bool = False
    ) -> None:
        """The release running (once known; `overwrite`: a rollback brought another back)."""
        view = self.apps.get(app_uuid)
        if view is None or not release_uuid or view.current_release_uuid == release_uuid:
            return
        if view.current_release_uuid is None or overwrite:
            self.apps[app_uuid] = replace(view, current_release_uuid=release_uuid)
            self._persist()
            if overwrite:
                self._notify()

    def set_lock(self, app_uuid: str, service: str | None, since: float | None) -> None:
        view = self.apps.get(app_uuid)
        if view is None or (view.lock_service, view.lock_since) == (service, since):
            return
        self.apps[app_uuid] = replace(view, lock_service=service, lock_since=since)
        self._notify()

    def set_services(self, app_uuid: str, services: dict[str, ServiceView]) -> None:
        view = self.apps.get(app_uuid)
        if view is None or view.services == services:
            return
        self.apps[app_uuid] = replace(view, services=services)
        self._notify()

    def set_download_progress(
        self, app_uuid: str, service_names: tuple[str, ...], percent: int
    ) -> None:
        view = self.apps.get(app_uuid)
        if view is None:
            return
        services = dict(view.services)
        for name in service_names:
            svc = services.get(name)
            if svc is not None and svc.download_progress != percent:
                services[name] = replace(
                    svc, status=ServiceStatus.DOWNLOADING, download_progress=percent
                )
        self.set_services(app_uuid, services)

    def mark_poll(self, ok: bool, error: str | None = None) -> None:
        if ok:
            self.last_poll = self._clock()
            self.last_poll_error = None
        else:
            self.last_poll_error = error
        self._notify()

    def mark_report(self, ok: bool, error: str | None = None) -> None:
        if ok:
            self.last_report = self._clock()
            self.last_report_error = None
        else:
            self.last_report_error = error

    def persist_heartbeat(self) -> None:
        self._persist()

    # --- readers ------------------------------------------------------------------------------

    def app(self, app_uuid: str) -> AppView | None:
        return self.apps.get(app_uuid)

    def container_apps(self) -> list[AppView]:
        """The apps that run containers here (not a host app nor the supervisor's own), in
        board order: what the single-app views (/v1/device, /v2/state/status) pick from, as
        the reference picks from its containers and images."""
        return [a for a in self.apps.values() if not a.runs_nothing]

    def overall_status(self) -> str:
        updating = any(a.update_status in IN_PROGRESS for a in self.apps.values())
        return "Updating" if updating else "Idle"
