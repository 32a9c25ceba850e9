"""Local mode routes: the target state set on the device itself (`balena push <device-ip>`),
and the device facts the balena CLI asks for before it builds."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.common import (
    ApiError,
    flag,
    json_response,
    read_body,
    success,
)
from agent.api.ports import CONTEXT
from agent.errors import TargetStateError

NOT_LOCAL = "Target state can only set when device is in local mode"


async def get_target_state(request: web.Request) -> web.Response:
    """The target in force, as `{local: {name, config, apps}}` (apps in v3, keyed by uuid)."""
    device = request.app[CONTEXT].targets.document() or {}
    local: dict[str, Any] = {
        "name": device.get("name", ""),
        "config": device.get("config", {}),
        "apps": device.get("apps", {}),
    }
    return success(state={"local": local, "dependent": {"apps": {}, "devices": {}}})


async def set_target_state(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    if not ctx.targets.local_mode:
        raise ApiError(400, NOT_LOCAL)
    # the converter is loaded on first use: idle devices never need it
    from agent.local.legacy import pin_local_images, service_images, to_v3

    body = await read_body(request)
    force = flag(body, "force")
    body.pop("force", None)
    base = ctx.targets.base
    try:
        document = to_v3(body, ctx.settings.device_uuid, base.name if base is not None else "")
    except TargetStateError as exc:
        raise ApiError(400, str(exc)) from exc
    image_ids = {}
    for image in sorted(service_images(document)):
        image_id = await ctx.engine.image_id(image)
        if image_id is not None:
            image_ids[image] = image_id
    document = pin_local_images(document, image_ids)
    refused = ctx.targets.accept_local(document)
    if refused is not None:
        raise ApiError(400, refused)
    ctx.apply.wake(force=force, recheck=True)
    return success(message="OK")


async def device_info(request: web.Request) -> web.Response:
    """`{info: {arch, deviceType}}`: the CLI builds for this arch (%%BALENA_ARCH%% in
    Dockerfile.template); the same value containers get as BALENA_DEVICE_ARCH."""
    settings = request.app[CONTEXT].settings
    info = {"arch": settings.device_arch, "deviceType": settings.device_type}
    return json_response({"status": "success", "info": info})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/local/target-state", get_target_state)
    app.router.add_post("/v2/local/target-state", set_target_state)
    app.router.add_get("/v2/local/device-info", device_info)
