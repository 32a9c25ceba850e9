"""What the local API does to apps and the device: restart, purge, service start/stop/restart,
reboot and shutdown. Each checks the update locks first (423 while one is held, unless forced).

Restart and purge go through the apply loop, as the reference does: the app is held without
services (the planner removes its containers), its volumes are removed (purge), and then the
real target is restored and the planner creates everything again. Service actions are single
engine calls on the service's container.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

import structlog
from aiohttp import web

from agent.api.common import ApiError, require_app_scope
from agent.api.ports import CONTEXT, ApiContext
from agent.errors import NotFound
from agent.events.kinds import AppActionTaken, ServiceActionTaken
from agent.locks import AgentLocks, LockHeld, held_locks
from agent.model import AppSpec, ContainerState, CurrentState
from agent.model.current import best_by_service

log = structlog.get_logger("agent.api")

LOCKED = "Updates are locked: an app holds its update lock (force overrides it)"
APP_NOT_FOUND = (
    "App not found: an app needs to be installed for this endpoint to work. If you've "
    "recently moved this device from another app, please push an app and wait for it to be "
    "installed first."
)
SERVICE_NOT_FOUND = "Service not found, a container must exist for this endpoint to work"
TARGET_SERVICE_NOT_FOUND = "Service does not exist in target release"
NAME_REQUIRED = (
    "serviceName or imageId parameters were not provided or the app is multi-container. "
    "Use the v2 service action endpoints."
)
SETTLE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class AppRef:
    id: int
    uuid: str
    name: str
    spec: AppSpec | None  # None: only on the engine, not in the target


@contextlib.contextmanager
def legacy_codes() -> Iterator[None]:
    """The v1 routes answer 400 where v2 answers 404 (unknown app, unknown service), as the
    reference does to keep its old interface."""
    try:
        yield
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise ApiError(400, exc.message) from exc


async def current_state(ctx: ApiContext) -> CurrentState:
    return await ctx.engine.current_state(ctx.managed_images())


def find_app(ctx: ApiContext, current: CurrentState, app_id: int) -> AppRef:
    base = ctx.targets.base
    for app in base.apps.values() if base is not None else ():
        if app.id == app_id:
            return AppRef(app.id, app.uuid, app.name, app)
    for c in current.containers:
        if c.app_id == app_id:
            return AppRef(app_id, c.app_uuid, c.app_uuid, None)
    raise ApiError(404, APP_NOT_FOUND)


async def scoped_app(request: web.Request, app_id: int) -> tuple[AppRef, CurrentState]:
    """The app `app_id` for a request: 401 outside the key's scope, 404 when unknown."""
    require_app_scope(request, app_id)
    ctx = request.app[CONTEXT]
    current = await current_state(ctx)
    return find_app(ctx, current, app_id), current


async def locked(ctx: ApiContext, app_id: int | None = None) -> bool:
    # the lock dir is the containers' ground: read it in a thread, never on the event loop
    held = await asyncio.to_thread(held_locks, ctx.settings.lock_dir)
    return bool(held) if app_id is None else app_id in held


def service_containers(current: CurrentState, app: AppRef) -> dict[str, ContainerState]:
    """One container per service of the app: the running one, else the newest."""
    return best_by_service(current.app_containers(app.uuid))


def pick_service(
    current: CurrentState, app: AppRef, service_name: str | None, image_id: int | None
) -> ContainerState:
    containers = service_containers(current, app)
    if not containers:
        raise ApiError(404, APP_NOT_FOUND)
    if service_name is None and image_id is None:
        if len(containers) > 1:
            raise ApiError(400, NAME_REQUIRED)
        return next(iter(containers.values()))
    for c in containers.values():
        if c.service_name == service_name or (image_id is not None and c.image_id == image_id):
            return c
    raise ApiError(404, SERVICE_NOT_FOUND)


def require_in_target(app: AppRef, container: ContainerState) -> None:
    """A service action acts only on a service the target release still has (by image id or
    name), as the reference: 404 otherwise, from v1 and v2 alike (a container the target
    dropped, kept by an update lock, is the apply loop's to remove, not the API's to revive)."""
    release = app.spec.release if app.spec is not None else None
    services = release.services if release is not None else {}
    if not any(
        name == container.service_name or spec.image_id == container.image_id
        for name, spec in services.items()
    ):
        raise ApiError(404, TARGET_SERVICE_NOT_FOUND)


class ServiceAction(StrEnum):
    """What the service action endpoints do to a service's container (the reference's
    CompositionStepAction of POST /v2/applications/{appId}/{action}-service)."""

    RESTART = "restart"
    STOP = "stop"
    START = "start"


async def service_action(
    ctx: ApiContext, app: AppRef, container: ContainerState, action: ServiceAction, force: bool
) -> None:
    """Restart, stop or start one service's container, holding the app's update lock on that
    service meanwhile (so the app can't take it halfway), as the reference does. Starting a
    service needs no lock (the reference takes none for it)."""
    try:  # the routes pass members; a plain string from elsewhere is checked, never guessed
        action = ServiceAction(action)
    except ValueError as exc:
        log.error("service_action_unknown", action=str(action), service=container.service_name)
        raise ApiError(400, f"unknown service action {action!r}") from exc
    taken: AgentLocks | None = None
    if not force and action is not ServiceAction.START:
        if await locked(ctx, app.id):
            raise ApiError(423, LOCKED)
        try:
            taken = await asyncio.to_thread(
                AgentLocks.take, ctx.settings.lock_dir, app.id, [container.service_name]
            )
        except LockHeld as exc:
            raise ApiError(423, LOCKED) from exc
        except OSError as exc:
            log.error("lock_take_failed", app_id=app.id, error=str(exc))
            raise ApiError(503, f"could not take the update lock: {exc}") from exc
    log.info("service_action", action=action, app_id=app.id, service=container.service_name)
    ctx.bus.publish(ServiceActionTaken(action.value, app.id, container.service_name))
    try:
        match action:
            case ServiceAction.RESTART:
                await ctx.engine.restart(container.id)
            case ServiceAction.STOP:
                await ctx.engine.stop(container.id)
            case ServiceAction.START:
                await ctx.engine.start(container.id)
            case _:
                assert_never(action)
    except NotFound as exc:
        raise ApiError(404, f"{SERVICE_NOT_FOUND} ({exc})") from exc
    finally:
        if taken is not None:
            await asyncio.to_thread(taken.release)


async def restart_app(ctx: ApiContext, app: AppRef, force: bool, purge: bool = False) -> None:
    """Remove the app's containers (and with `purge` its volumes), then let the apply loop
    bring them back."""
    if not force and await locked(ctx, app.id):
        raise ApiError(423, LOCKED)
    what = "purge" if purge else "restart"
    log.info("app_action", action=what, app_id=app.id, app=app.name, force=force)
    ctx.bus.publish(AppActionTaken(what, app.id, app.name, force))
    ctx.targets.empty_app(app.uuid, True)
    ctx.apply.wake(force=force)
    try:
        await _until(ctx, lambda cur: not cur.app_containers(app.uuid), f"{app.name} to stop")
        if purge:
            current = await current_state(ctx)
            for volume in current.volumes:
                if volume.app_uuid == app.uuid or (
                    volume.app_uuid is None and volume.app_id == app.id
                ):
                    log.info("volume_purged", app_id=app.id, volume=volume.name)
                    with contextlib.suppress(NotFound):
                        await ctx.engine.remove_volume(volume.name)
    finally:
        ctx.targets.empty_app(app.uuid, False)
        ctx.apply.wake(force=force)
    if app.spec is not None and app.spec.release is not None:
        wanted = {n for n, s in app.spec.release.services.items() if s.running}
        await _until(
            ctx,
            lambda cur: (
                wanted <= {c.service_name for c in cur.app_containers(app.uuid) if c.running}
            ),
            f"{app.name} to run again",
        )
    log.info("app_action_done", action=what, app_id=app.id)


async def _until(ctx: ApiContext, done: Callable[[CurrentState], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not done(await current_state(ctx)):
        if time.monotonic() > deadline:
            raise ApiError(503, f"timed out after {SETTLE_TIMEOUT_S:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


async def device_action_blocked(ctx: ApiContext, force: bool) -> bool:
    return not force and await locked(ctx)
