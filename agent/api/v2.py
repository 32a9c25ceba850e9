"""The v2 routes of the local supervisor API (apps, services, device facts)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from agent import SUPERVISOR_COMPAT_VERSION, __version__
from agent.api import actions
from agent.api.auth import Handler
from agent.api.common import (
    ApiError,
    app_id_of,
    flag,
    json_response,
    optional_int,
    optional_str,
    read_body,
    scope_of,
    success,
    text_response,
)
from agent.api.connectivity import (
    current_view,
    device_status,
    device_status_body,
    tunnel_state,
)
from agent.api.ports import CONTEXT, WindowVerdict
from agent.device.info import vpn_state
from agent.errors import Conflict, NotFound, StoreError
from agent.model import CurrentState, ServiceStatus
from agent.model.current import best_by_service

OPENAPI = Path(__file__).with_name("openapi.json")
_TAG_KEY_RE = re.compile(r"\s")
TAGS_BODY = "Invalid tags body, must be an object like `{[tagKey: string]: string}`"


# --- apps and services --------------------------------------------------------------------------


async def applications_state(request: web.Request) -> web.Response:
    ctx, scope = request.app[CONTEXT], scope_of(request)
    base = ctx.targets.base
    out: dict[str, Any] = {}
    for uuid, view in sorted(ctx.status.apps.items()):
        if not scope.allows(view.app_id):
            continue
        spec = base.apps.get(uuid) if base is not None else None
        release = spec.release if spec is not None else None
        services = {}
        for name, svc in sorted(view.services.items()):
            progress = svc.download_progress if svc.status == ServiceStatus.DOWNLOADING else None
            services[name] = {
                "status": str(svc.status),
                "image": svc.image,
                "releaseId": release.id if release is not None else None,
                "downloadProgress": progress,
            }
        out[view.name] = {
            "appId": view.app_id,
            "appUuid": uuid,
            "commit": view.release_uuid,
            "updateStatus": view.update_status.value if view.update_status else None,
            "services": services,
        }
    return json_response(out)


async def application_state(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    app_id = app_id_of(request.match_info["appId"])
    # the reference's 409 for an app the device doesn't have
    app, _ = await _known_app(request, app_id, 409, f"Application ID does not exist: {app_id}")
    view = ctx.status.apps.get(app.uuid)
    release = app.spec.release if app.spec is not None else None
    services: dict[str, Any] = {}
    for name, svc in sorted(view.services.items()) if view is not None else ():
        spec = release.services.get(name) if release is not None else None
        key = str(spec.image_id) if spec is not None else name
        progress = svc.download_progress if svc.status == ServiceStatus.DOWNLOADING else None
        services[key] = {
            "status": str(svc.status),
            "releaseId": release.id if release is not None else None,
            "download_progress": progress,
        }
    commit = view.current_release_uuid if view is not None else None
    return json_response({"commit": commit, "local": {str(app_id): {"services": services}}})


def service_action(action: actions.ServiceAction) -> Handler:
    """POST /v2/applications/{appId}/{restart,stop,start}-service {serviceName | imageId, force}."""

    async def handle(request: web.Request) -> web.Response:
        app_id = app_id_of(request.match_info["appId"])
        body = await read_body(request)
        name, image_id = optional_str(body, "serviceName"), optional_int(body, "imageId")
        force = flag(body, "force")
        if name is None and image_id is None:
            raise ApiError(400, actions.NAME_REQUIRED)
        app, current = await actions.scoped_app(request, app_id)
        container = actions.pick_service(current, app, name, image_id)
        actions.require_in_target(app, container)
        await actions.service_action(request.app[CONTEXT], app, container, action, force)
        return text_response("OK")

    return handle


def app_action(purge: bool) -> Handler:
    """POST /v2/applications/{appId}/restart|purge {force}."""

    async def handle(request: web.Request) -> web.Response:
        app_id = app_id_of(request.match_info["appId"])
        force = flag(await read_body(request), "force")
        # the reference's 503 (its internal-inconsistency error) for an app it doesn't have
        missing = f"Application with ID {app_id} is not in the current state"
        app, _ = await _known_app(request, app_id, 503, missing)
        await actions.restart_app(request.app[CONTEXT], app, force, purge=purge)
        return text_response("OK")

    return handle


async def _known_app(
    request: web.Request, app_id: int, status: int, message: str
) -> tuple[actions.AppRef, CurrentState]:
    """`actions.scoped_app`, with the reference's status for an unknown app on this route."""
    try:
        return await actions.scoped_app(request, app_id)
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise ApiError(status, message) from exc


async def state_status(request: web.Request) -> web.Response:
    ctx, scope = request.app[CONTEXT], scope_of(request)
    current = await actions.current_state(ctx)
    base = ctx.targets.base
    views = [v for v in ctx.status.container_apps() if scope.allows(v.app_id)]
    first = min(views, key=lambda v: v.app_id) if views else None
    containers, images, progress = [], [], []
    if first is not None:
        svc_status = {n: str(s.status) for n, s in first.services.items()}
        for c in sorted(current.app_containers(first.app_uuid), key=lambda c: c.service_name):
            mine = c.release_uuid == first.release_uuid and c.service_name in svc_status
            containers.append(
                {
                    "status": svc_status[c.service_name] if mine else c.status.value,
                    "serviceName": c.service_name,
                    "appId": c.app_id,
                    "imageId": c.image_id,
                    "serviceId": c.service_id,
                    "containerId": c.id,
                    "createdAt": _iso(c.created_at),
                }
            )
        spec = base.apps.get(first.app_uuid) if base is not None else None
        release = spec.release if spec is not None else None
        for name, view in sorted(first.services.items()):
            svc = release.services.get(name) if release is not None else None
            image = current.image_for(view.image)
            downloading = view.status == ServiceStatus.DOWNLOADING
            if downloading and view.download_progress is not None:
                progress.append(view.download_progress)
            images.append(
                {
                    "name": view.image,
                    "appId": first.app_id,
                    "serviceName": name,
                    "imageId": svc.image_id if svc is not None else None,
                    "dockerImageId": image.id if image is not None else None,
                    "status": "Downloading" if downloading else "Downloaded",
                    "downloadProgress": view.download_progress if downloading else None,
                }
            )
    return success(
        appState="applied" if ctx.apply.converged.is_set() else "applying",
        overallDownloadProgress=sum(progress) / len(progress) if progress else None,
        containers=containers,
        images=images,
        release=first.release_uuid if first is not None else None,
    )


def _iso(created: str) -> str | None:
    try:
        return datetime.fromtimestamp(int(created), UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return created or None


async def container_id(request: web.Request) -> web.Response:
    ctx, scope = request.app[CONTEXT], scope_of(request)
    current = await actions.current_state(ctx)
    allowed = [c for c in current.containers if scope.allows(c.app_id)]
    best = {name: c.id for name, c in best_by_service(allowed).items()}
    name = request.query.get("serviceName") or request.query.get("service")
    if name is None:
        return success(services=best)
    if name not in best:
        raise ApiError(503, "Could not find service with that name")  # the reference's 503
    return success(containerId=best[name])


# --- device -------------------------------------------------------------------------------------


async def version(_request: web.Request) -> web.Response:
    # the reference's version the agent matches, not ours: the balena CLI gates on it
    return success(version=SUPERVISOR_COMPAT_VERSION)


async def device_name(request: web.Request) -> web.Response:
    base = request.app[CONTEXT].targets.base
    return success(deviceName=base.name if base is not None else "")


async def device_vpn(request: web.Request) -> web.Response:
    """`enabled`: the fleet's VPN control var and a configured cloudlink; `connected`: what
    the agent's own probe of the tunnel says (not a file some script wrote)."""
    control = vpn_state(_config_vars(request))["enabled"]
    tunnel = await tunnel_state(request)
    return success(vpn={"enabled": control and tunnel["enabled"], "connected": tunnel["connected"]})


def _config_vars(request: web.Request) -> dict[str, str]:
    base = request.app[CONTEXT].targets.base
    return dict(base.config) if base is not None else {}


async def get_tags(request: web.Request) -> web.Response:
    """The cloud's tags with the ones set here and not yet sent laid over them; the last known
    ones when the cloud can't be reached (the reference answers 500 then)."""
    return success(tags=await request.app[CONTEXT].tags.view())


async def patch_tags(request: web.Request) -> web.Response:
    """202 once the tags are scheduled and persisted; agent/cloud/tags.py sends them."""
    body = await read_body(request)
    for key, value in body.items():
        if not isinstance(value, str):
            raise ApiError(400, TAGS_BODY)
        if _TAG_KEY_RE.search(key):
            raise ApiError(400, "Tag keys cannot contain whitespace")
        if not key:  # ours: the cloud has no tag without a key, it would be retried forever
            raise ApiError(400, "Tag keys cannot be empty")
    try:
        await request.app[CONTEXT].tags.set(body)
    except StoreError as exc:
        raise ApiError(503, f"could not persist the device's tags: {exc}") from exc
    return json_response({"status": "success"}, status=202)


async def cleanup_volumes(request: web.Request) -> web.Response:
    """Remove the agent's volumes that no target app references (only the caller's app's,
    for an app-scoped key — the reference would remove other apps' too)."""
    ctx, scope = request.app[CONTEXT], scope_of(request)
    base = ctx.targets.base
    referenced: set[tuple[int, str]] = set()
    for app in base.apps.values() if base is not None else ():
        if app.release is not None:
            referenced |= {(app.id, name) for name in app.release.volumes}
    removed = []
    for volume in (await actions.current_state(ctx)).volumes:
        if not scope.allows(volume.app_id):
            continue
        name = volume.name.split("_", 1)[1] if "_" in volume.name else volume.name
        if (volume.app_id, name) in referenced:
            continue
        try:
            await ctx.engine.remove_volume(volume.name)
            removed.append(volume.name)
        except (NotFound, Conflict):
            continue  # gone already, or still used by a container
    if removed:
        actions.log.info("volumes_cleaned_up", volumes=removed)
    return success()


def _update_window(verdict: WindowVerdict, now: float) -> dict[str, Any]:
    """The update window as the latest apply pass saw it (agent/reconcile/window_gate.py)."""
    opens = verdict.next_open
    return {
        "setting": verdict.setting,
        "holding": verdict.hold is not None,
        "reason": verdict.hold,
        "nextOpen": opens,
        "nextOpenSeconds": None if opens is None else round(max(0.0, opens - now), 1),
    }


async def agent_status(request: web.Request) -> web.Response:
    """Ours: everything `device-agent status` shows, from the status board."""
    ctx, scope, now = request.app[CONTEXT], scope_of(request), time.time()
    status = ctx.status

    def age(t: float | None) -> float | None:
        return None if t is None else round(max(0.0, now - t), 1)

    apps = []
    for uuid, view in sorted(status.apps.items()):
        if not scope.allows(view.app_id):
            continue
        apps.append(
            {
                "appId": view.app_id,
                "appUuid": uuid,
                "name": view.name,
                "release": view.release_uuid,
                "currentRelease": view.current_release_uuid,
                "updateStatus": view.update_status.value if view.update_status else None,
                "since": view.since,
                "sinceSeconds": age(view.since),
                "reason": view.reason,
                "services": [
                    {
                        "name": name,
                        "status": str(svc.status),
                        "image": svc.image,
                        "downloadProgress": svc.download_progress,
                    }
                    for name, svc in sorted(view.services.items())
                ],
            }
        )
    base = ctx.targets.base
    return success(
        device={
            "uuid": ctx.settings.device_uuid,
            "agentVersion": __version__,
            "supervisorVersion": SUPERVISOR_COMPAT_VERSION,
            "name": base.name if base is not None else "",
            "status": status.overall_status(),
            "localMode": ctx.targets.local_mode,
            "converged": ctx.apply.converged.is_set(),
            "heartbeat": {
                "lastPoll": status.last_poll,
                "ageSeconds": age(status.last_poll),
                "error": status.last_poll_error,
            },
            "report": {
                "last": status.last_report,
                "ageSeconds": age(status.last_report),
                "error": status.last_report_error,
            },
            "tunnel": await tunnel_state(request),
            "connectivity": device_status_body(await current_view(request)),
            "targetError": status.target_error,
            "configErrors": list(status.config_errors),
            "updateWindow": _update_window(ctx.apply.window, now),
        },
        apps=apps,
    )


async def openapi(_request: web.Request) -> web.Response:
    return json_response(json.loads(OPENAPI.read_text()))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2/applications/state", applications_state)
    r.add_get("/v2/applications/{appId}/state", application_state)
    for action in actions.ServiceAction:
        r.add_post(f"/v2/applications/{{appId}}/{action}-service", service_action(action))
    r.add_post("/v2/applications/{appId}/restart", app_action(purge=False))
    r.add_post("/v2/applications/{appId}/purge", app_action(purge=True))
    r.add_get("/v2/state/status", state_status)
    r.add_get("/v2/containerId", container_id)
    r.add_get("/v2/version", version)
    r.add_get("/v2/device/name", device_name)
    r.add_get("/v2/device/vpn", device_vpn)
    r.add_get("/v2/device/status", device_status)
    r.add_get("/v2/device/tags", get_tags)
    r.add_patch("/v2/device/tags", patch_tags)
    r.add_get("/v2/cleanup-volumes", cleanup_volumes)
    r.add_get("/v2/agent/status", agent_status)
    r.add_get("/v2/openapi.json", openapi)
