"""What a pass tells the status board and the log about its target: each service's status
from the engine snapshot and the plan (`service_views`), and why skipped services are not run
(`log_skipped`)."""

from __future__ import annotations

import structlog

from agent.model import (
    AppSpec,
    ContainerStatus,
    CurrentState,
    ServiceStatus,
    TargetState,
    UpdateStatus,
)
from agent.model.skipped import SkipReason, skip_events
from agent.reconcile.steps import AppPlan
from agent.status.board import ServiceView

log_target = structlog.get_logger("agent.target")


def service_views(
    app: AppSpec, current: CurrentState, app_plan: AppPlan | None, progress: dict[str, int]
) -> dict[str, ServiceView]:
    """Per-service status for one target app, from the engine snapshot and the plan.

    `progress` maps image refs to the latest pull percentage seen.
    """
    views: dict[str, ServiceView] = {
        # the supervisor runs (the agent is in its place): reported as the reference does
        s.name: ServiceView(s.image, ServiceStatus.RUNNING)
        for s in app.skipped
        if s.reason is SkipReason.SUPERVISOR
    }
    if app.release is None:
        return views
    applying = app_plan is not None and app_plan.status is UpdateStatus.APPLYING_CHANGES
    for name, svc in app.release.services.items():
        if not current.has_image(svc.image):
            views[name] = ServiceView(
                svc.image, ServiceStatus.DOWNLOADING, progress.get(svc.image, 0)
            )
            continue
        want = svc.config_hash()
        mine = [c for c in current.containers if c.app_uuid == app.uuid and c.service_name == name]
        match = next((c for c in mine if c.config_hash == want), None)
        if match is None:
            status: ServiceStatus | str = (
                ServiceStatus.INSTALLING if applying else ServiceStatus.DOWNLOADED
            )
        elif match.status is ContainerStatus.RUNNING and any(
            c.running and c.config_hash != want for c in mine
        ):
            status = ServiceStatus.HANDING_OVER  # new and old side by side (hand-over)
        elif match.status is ContainerStatus.RUNNING:
            status = ServiceStatus.RUNNING
        elif match.status is ContainerStatus.CREATED:
            status = ServiceStatus.INSTALLED
        elif match.status is ContainerStatus.DEAD:
            status = ServiceStatus.DEAD
        else:
            status = match.status.value
        views[name] = ServiceView(svc.image, status, 100)
    return views


def log_skipped(target: TargetState, previous: TargetState | None) -> None:
    """Say why each app's skipped services are not run: once per app and release, when a
    target brings them (not again for every other change of the target)."""
    for uuid, app in sorted(target.apps.items()):
        before = previous.apps.get(uuid) if previous is not None else None
        if before is not None and (before.release_uuid, before.skipped) == (
            app.release_uuid,
            app.skipped,
        ):
            continue
        for event in skip_events(app):
            log_target.info("app_skipped", **event)
