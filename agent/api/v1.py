"""The v1 routes of the local supervisor API (legacy, single-container era; kept compatible)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from agent.api import actions
from agent.api.actions import ServiceAction
from agent.api.auth import Handler
from agent.api.common import (
    ApiError,
    app_id_of,
    flag,
    json_response,
    read_body,
    scope_of,
    text_response,
)
from agent.api.context import HOST
from agent.api.ports import CONTEXT
from agent.host import HostAction
from agent.model import ServiceStatus
from agent.model.update_status import FAILED, IN_PROGRESS

log = structlog.get_logger("agent.api")

ONLY_SINGLE = "Some v1 endpoints are only allowed on single-container apps"


async def healthy(request: web.Request) -> web.Response:
    ok, reason = request.app[CONTEXT].healthy()
    if ok:
        return text_response("OK")
    log.warning("unhealthy", reason=reason)
    return text_response("Unhealthy", status=500)


async def ping(_request: web.Request) -> web.Response:
    return text_response("OK")


async def update(request: web.Request) -> web.Response:
    """204 when the update check runs (forced, or instant updates on), 202 when ignored.
    `cancel` aborts the apply in flight (its pulls too) before the target is applied anew,
    as the reference does."""
    body = await read_body(request)
    force, cancel = flag(body, "force"), flag(body, "cancel")
    accepted = request.app[CONTEXT].updates.request(force, cancel=cancel)
    return web.Response(status=204 if accepted else 202)


def device_action(action: HostAction) -> Handler:
    """POST /v1/reboot, /v1/shutdown: 202 {Data, Error}, 423 while an app holds its lock."""

    async def handle(request: web.Request) -> web.Response:
        force = flag(await read_body(request), "force")
        if await actions.device_action_blocked(request.app[CONTEXT], force):
            raise ApiError(423, actions.LOCKED, body={"Data": "", "Error": actions.LOCKED})
        request.app[HOST].perform_later(action)
        return json_response({"Data": "OK", "Error": None}, status=202)

    return handle


def app_action(purge: bool) -> Handler:
    """POST /v1/restart (answers OK) and /v1/purge (answers {Data, Error}), body {appId, force}."""

    async def handle(request: web.Request) -> web.Response:
        body = await read_body(request)
        app_id, force = app_id_of(body.get("appId")), flag(body, "force")
        try:
            app, _ = await actions.scoped_app(request, app_id)
        except ApiError as exc:  # the reference: an internal inconsistency, 503
            if exc.status != 404:
                raise
            raise ApiError(
                503, f"Application with ID {app_id} is not in the current state"
            ) from exc
        await actions.restart_app(request.app[CONTEXT], app, force, purge=purge)
        return json_response({"Data": "OK", "Error": ""}) if purge else text_response("OK")

    return handle


async def blink(request: web.Request) -> web.Response:
    """200 whether or not the board has an LED, as the reference answers (it blinks nothing
    there either); without one the request is only logged."""
    if not await request.app[HOST].blink():
        log.info("blink_requested", led=False, note="this device has no LED to blink")
    return text_response("OK")


async def regenerate_api_key(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    key = ctx.keys.regenerate(scope_of(request))
    if scope_of(request).is_global:
        ctx.key_rotated()
    return text_response(key)


async def device(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    scope = scope_of(request)
    apps = [a for a in ctx.status.container_apps() if scope.allows(a.app_id)]
    fields = ctx.device_fields()
    pending = any(a.update_status is not None and a.update_status in IN_PROGRESS for a in apps)
    out: dict[str, Any] = {
        "api_port": fields.get("api_port"),
        "ip_address": fields.get("ip_address"),
        "os_version": fields.get("os_version"),
        "mac_address": fields.get("mac_address"),
        "supervisor_version": fields.get("supervisor_version"),
        "update_pending": pending,
        "update_failed": any(
            a.update_status is not None and a.update_status in FAILED for a in apps
        )
        or ctx.status.target_error is not None,
        "update_downloaded": any(
            a.update_status is not None
            and a.update_status.value in ("downloaded", "applying changes")
            for a in apps
        ),
    }
    first = apps[0] if apps else None
    if first is not None and first.current_release_uuid:
        out["commit"] = first.current_release_uuid
    service = next(iter(first.services.values()), None) if first is not None else None
    if service is not None:
        status = str(service.status)
        out["status"] = "Idle" if status == ServiceStatus.RUNNING else status
        out["download_progress"] = service.download_progress
    return json_response(out)


async def get_app(request: web.Request) -> web.Response:
    app_id = app_id_of(request.match_info["appId"])
    with actions.legacy_codes():  # v1: an unknown app is 400, as the reference answers
        app, current = await actions.scoped_app(request, app_id)
    containers = actions.service_containers(current, app)
    if not containers:
        raise ApiError(400, "App not found")
    if len(containers) > 1:
        raise ApiError(400, ONLY_SINGLE)
    (container,) = containers.values()
    spec = None
    if app.spec is not None and app.spec.release is not None:
        spec = app.spec.release.services.get(container.service_name)
    return json_response(
        {
            "appId": app_id,
            "commit": container.release_uuid,
            "containerId": container.id,
            "env": dict(spec.environment) if spec is not None else {},
            "imageId": container.image,
            "releaseId": container.release_id,
        }
    )


def legacy_service(action: ServiceAction) -> Handler:
    """POST /v1/apps/{appId}/stop|start: single-container apps only; answers {containerId}."""

    async def handle(request: web.Request) -> web.Response:
        app_id = app_id_of(request.match_info["appId"])
        force = flag(await read_body(request), "force")
        with actions.legacy_codes():  # v1: unknown app or service is 400, as the reference
            app, current = await actions.scoped_app(request, app_id)
            container = actions.pick_service(current, app, None, None)
        actions.require_in_target(app, container)  # 404 even here, as the reference
        await actions.service_action(request.app[CONTEXT], app, container, action, force)
        return json_response({"containerId": container.id})

    return handle


async def get_host_config(request: web.Request) -> web.Response:
    from agent.api import hostconfig  # D-Bus and the proxy files: ≈ 0.1 MB, on first use

    return await hostconfig.get_host_config(request)


async def patch_host_config(request: web.Request) -> web.Response:
    from agent.api import hostconfig

    return await hostconfig.patch_host_config(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ping", ping)
    app.router.add_get("/v1/healthy", healthy)
    app.router.add_post("/v1/update", update)
    app.router.add_post("/v1/reboot", device_action(HostAction.REBOOT))
    app.router.add_post("/v1/shutdown", device_action(HostAction.SHUTDOWN))
    app.router.add_post("/v1/restart", app_action(purge=False))
    app.router.add_post("/v1/purge", app_action(purge=True))
    app.router.add_post("/v1/blink", blink)
    app.router.add_post("/v1/regenerate-api-key", regenerate_api_key)
    app.router.add_get("/v1/device", device)
    app.router.add_get("/v1/device/host-config", get_host_config)
    app.router.add_patch("/v1/device/host-config", patch_host_config)
    app.router.add_get("/v1/apps/{appId}", get_app)
    app.router.add_post("/v1/apps/{appId}/stop", legacy_service(ServiceAction.STOP))
    app.router.add_post("/v1/apps/{appId}/start", legacy_service(ServiceAction.START))
