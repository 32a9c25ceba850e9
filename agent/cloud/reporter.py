"""Current-state reporting: PATCH only what changed since the last acknowledged report.

- Every update-status transition goes out, in order, as its own report, unthrottled.
- Other changes go out promptly (coalesced over 1 s); download progress alone at most every
  10 s; metrics alone at most every 5 minutes.
- A failed report is retried with backoff; since each report is a diff against the last
  *acknowledged* one, nothing is dropped — failed changes are merged into the next attempt.
- The acknowledged report is persisted, so a restart doesn't resend what the cloud has, and
  with nothing changing no PATCH is sent at all.
- It wakes on the bus's `StatusChanged` (the board) and `DeviceFieldsChanged` (a rotated API
  key), and publishes `ReportFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from agent.cloud.client import CloudClient
from agent.errors import CloudError, StoreError
from agent.events.bus import Bus
from agent.events.kinds import DeviceFieldsChanged, ReportFailed, StatusChanged
from agent.retry import Backoff
from agent.status.board import AppView, ServiceView, StatusBoard, Transition
from agent.store import Store
from agent.waits import wait_for

log = structlog.get_logger("agent.reporter")

STORE_KEY = "report-cache"
METRIC_KEYS = frozenset(
    {"cpu_usage", "memory_usage", "memory_total", "storage_usage", "storage_total", "cpu_temp"}
)
COALESCE_S = 1.0
PROGRESS_INTERVAL_S = 10.0
METRICS_INTERVAL_S = 300.0
IDLE_CHECK_S = 60.0


@dataclass(frozen=True)
class ReportSources:
    device_fields: Callable[[], dict[str, Any]]
    metrics: Callable[[], dict[str, Any]]
    report_apps: Callable[[], bool]  # False in local mode: apps are not the cloud's business


def apps_report(apps: dict[str, AppView], transition: Transition | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for uuid, view in sorted(apps.items()):
        if view.host_app:
            continue  # balenaOS's own app: the reference reports nothing of it
        release = view.release_uuid
        status = view.update_status
        if transition is not None and transition.app_uuid == uuid:
            release, status = transition.release_uuid, transition.status
        releases: dict[str, Any] = {}
        if release:
            releases[release] = {
                "update_status": status.value if status else None,
                "update_lock": _lock(view),
                # ours (as update_lock): why the release waits or failed; None when nothing
                "update_reason": view.reason,
                "services": {name: _service(svc) for name, svc in sorted(view.services.items())}
                if release == view.release_uuid
                else {},
            }
        out[uuid] = {"release_uuid": view.current_release_uuid, "releases": releases}
    return out


def _service(svc: ServiceView) -> dict[str, Any]:
    """A service's entry; a service with no download (the supervisor's own, which the agent
    doesn't run) has no `download_progress`, as the reference reports it."""
    out: dict[str, Any] = {"image": svc.image, "status": str(svc.status)}
    if svc.download_progress is not None:
        out["download_progress"] = svc.download_progress
    return out


def _lock(view: AppView) -> dict[str, str] | None:
    """Which service holds the app's update lock and since when (ISO 8601), or None."""
    if view.lock_service is None or view.lock_since is None:
        return None
    since = datetime.fromtimestamp(view.lock_since, tz=UTC).isoformat(timespec="seconds")
    return {"service": view.lock_service, "since": since}


def _strip_progress(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_progress(v) for k, v in value.items() if k != "download_progress"}
    return value


class Reporter:
    def __init__(
        self,
        client: CloudClient,
        store: Store,
        status: StatusBoard,
        sources: ReportSources,
        clock: Callable[[], float] = time.monotonic,
        bus: Bus | None = None,
    ) -> None:
        """`bus`: the agent's (a bus of its own, never heard from, when None)."""
        self._client = client
        self._store = store
        self._status = status
        self._sources = sources
        self._clock = clock
        cache = store.get(STORE_KEY, {}) or {}
        self.acked: dict[str, Any] = cache.get("acked", {}) or {}
        self._metrics_sent_wall: float = float(cache.get("metrics_at", 0.0))
        self._last_sent = float("-inf")
        self._last_progress_sent = float("-inf")
        self._failures = 0
        self._backoff = Backoff(base_s=1.0, cap_s=60.0)
        self.reports_sent = 0
        self._bus = bus if bus is not None else Bus()
        self._changed = asyncio.Event()  # something to report may have changed
        self._bus.subscribe(StatusChanged, lambda _: self._changed.set())
        self._bus.subscribe(DeviceFieldsChanged, lambda _: self._changed.set())

    # --- building -----------------------------------------------------------------------------

    def build(self, transition: Transition | None = None) -> dict[str, Any]:
        report = {**self._sources.device_fields(), "status": self._status.overall_status()}
        report.update(self._sources.metrics())
        if self._sources.report_apps():
            report["apps"] = apps_report(self._status.apps, transition)
        return report

    def diff(self, report: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in report.items() if self.acked.get(k) != v}

    # --- sending ------------------------------------------------------------------------------

    async def _send(self, changes: dict[str, Any]) -> None:
        await self._client.patch_state({self._client.uuid: changes})
        self.acked.update(changes)
        self.reports_sent += 1
        self._last_sent = self._clock()
        if "apps" in changes and _strip_progress(changes["apps"]) != changes["apps"]:
            self._last_progress_sent = self._last_sent
        if METRIC_KEYS & changes.keys():
            self._metrics_sent_wall = time.time()
        try:
            await self._store.put_async(
                STORE_KEY, {"acked": self.acked, "metrics_at": self._metrics_sent_wall}
            )
        except StoreError as exc:
            log.error("report_cache_persist_failed", error=str(exc))
        self._status.mark_report(True)
        log.debug("report_sent", keys=sorted(changes))

    async def tick(self) -> float | None:
        """Send what is due. Returns seconds until something else is due (None: nothing)."""
        try:
            while self._status.transitions:
                transition = self._status.transitions[0]
                changes = self.diff(self.build(transition))
                if changes:
                    await self._send(changes)
                view = self._status.apps.get(transition.app_uuid)
                if view is not None and view.host_app:  # not reported (apps_report)
                    self._status.transitions.popleft()
                    continue
                log.info(
                    "update_status_reported",
                    app_uuid=transition.app_uuid,
                    release=transition.release_uuid,
                    status=transition.status.value,
                )
                self._status.transitions.popleft()
            wait = await self._send_state()
        except CloudError as exc:
            self._failures += 1
            self._status.mark_report(False, str(exc))
            delay = self._backoff.delay(self._failures, exc.retry_after)
            log.warning(
                "report_failed",
                error=str(exc),
                attempt=self._failures,
                retry_in_s=round(delay, 1),
            )
            self._bus.publish(ReportFailed(str(exc)))
            return delay
        self._failures = 0
        return wait

    async def _send_state(self) -> float | None:
        changes = self.diff(self.build())
        if not changes:
            return None
        now = self._clock()
        metrics_only = changes.keys() <= METRIC_KEYS
        progress_only = (
            not metrics_only
            and (changes.keys() - METRIC_KEYS) == {"apps"}
            and _strip_progress(changes["apps"]) == _strip_progress(self.acked.get("apps"))
        )
        if metrics_only:
            due = self._metrics_sent_wall + METRICS_INTERVAL_S - time.time()
        elif progress_only:
            due = self._last_progress_sent + PROGRESS_INTERVAL_S - now
        else:
            due = self._last_sent + COALESCE_S - now
        if due > 0:
            return due
        await self._send(changes)
        return None

    async def run(self) -> None:
        while True:
            self._changed.clear()
            wait = await self.tick()
            if self._failures and wait is not None:
                await asyncio.sleep(wait)  # backing off: changes wait for the retry
                continue
            timeout = IDLE_CHECK_S if wait is None else max(0.05, wait)
            with contextlib.suppress(TimeoutError):
                await wait_for(self._changed.wait(), timeout=timeout)

    async def flush(self, timeout: float = 5.0) -> None:
        """Best effort on shutdown: send pending transitions and state."""
        with contextlib.suppress(TimeoutError, CloudError):
            await wait_for(self.tick(), timeout=timeout)
