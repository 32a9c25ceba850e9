"""Device registration, as the balena API does it for a supervisor that provisions itself
(open-balena-api `device-provisioning/register.ts`, api-keys `device-key`):

  POST /device/register                 Bearer <fleet provisioning key>; {application, uuid,
        device_type, api_key?, supervisor_version?, os_version?, os_variant?, mac_address?}
        -> 201 {id, uuid, api_key}; 409 '"uuid" must be unique.' for a known uuid; 401 for a
        key that is no fleet's provisioning key; 403 when it is another fleet's
  GET  /v7/device?$select=id&$filter=uuid eq '…'    Bearer <device key, or the provisioning
        key of the device's fleet> -> {d: [{id}]} ({d: []} when the key can't see it)
  POST /api-key/device/{id}/device-key  Bearer <provisioning key of the device's fleet>;
        {apiKey} -> 200 "<key>" (the device's key becomes apiKey)
Admin (no auth):
  POST /admin/applications              {id, provisioning_key, name?} -> 201 {id, name}
  PUT  /admin/applications/{id}/target  {name, config, apps}: the fleet's release, the target a
        device registering into the fleet starts with (as on balena) -> {id}
  GET  /admin/applications              -> [{id, name, devices: [uuid, …]}]
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devcloud.state import Cloud
from devcloud.tags import TAGS_KEY

_UUID_FILTER = re.compile(r"^uuid eq '([^']+)'$")


@dataclass
class Application:
    id: int
    name: str
    provisioning_key: str
    devices: list[str] = field(default_factory=list)  # uuids registered into it
    registrations: list[dict[str, Any]] = field(default_factory=list)  # request bodies
    target: dict[str, Any] | None = None  # what a device registering into it starts with


@dataclass
class Fleets:
    apps: dict[int, Application] = field(default_factory=dict)

    def by_key(self, key: str | None) -> Application | None:
        return next((a for a in self.apps.values() if key and a.provisioning_key == key), None)

    def of_device(self, uuid: str) -> Application | None:
        return next((a for a in self.apps.values() if uuid in a.devices), None)


FLEETS_KEY = web.AppKey("devcloud_fleets", Fleets)
CLOUD_KEY = web.AppKey("devcloud_fleets_cloud", Cloud)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() or None if header.startswith("Bearer ") else None


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read() or b"{}")
    except ValueError:
        raise web.HTTPBadRequest(text="body is not valid JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


async def register(request: web.Request) -> web.Response:
    fleets, cloud = request.app[FLEETS_KEY], request.app[CLOUD_KEY]
    fleet = fleets.by_key(_bearer(request))
    if fleet is None:
        raise web.HTTPUnauthorized(text="Unauthorized")
    data = await _body(request)
    application = data.get("application")
    if isinstance(application, bool) or not isinstance(application, int):
        raise web.HTTPBadRequest(text="Application ID must be a valid integer")
    if application != fleet.id:
        raise web.HTTPForbidden(text="the provisioning key is not this application's")
    if not isinstance(data.get("device_type"), str):
        raise web.HTTPBadRequest(text="Device type must be specified")
    uuid = data.get("uuid")
    if not isinstance(uuid, str) or not uuid or "/" in uuid:
        raise web.HTTPBadRequest(text="UUID must be specified")
    if cloud.get(uuid) is not None:
        raise web.HTTPConflict(text='"uuid" must be unique.')
    api_key = data.get("api_key")
    if api_key is None:
        api_key = secrets.token_hex(16)
    if not isinstance(api_key, str) or not api_key:
        raise web.HTTPBadRequest(text="api_key must be a string")
    if any(d.api_key == api_key for d in cloud.devices.values()):
        raise web.HTTPConflict(text='"key" must be unique.')
    cloud.register(uuid, api_key)
    if fleet.target is not None:
        cloud.set_target(uuid, fleet.target)
    fleet.devices.append(uuid)
    fleet.registrations.append(data)
    device_id = request.app[TAGS_KEY].device_id(uuid)
    return web.json_response({"id": device_id, "uuid": uuid, "api_key": api_key}, status=201)


def _allowed(request: web.Request, uuid: str) -> bool:
    """The bearer is the device's key, or the provisioning key of its fleet."""
    token = _bearer(request)
    if request.app[CLOUD_KEY].authenticate(uuid, token) is not None:
        return True
    fleet = request.app[FLEETS_KEY].of_device(uuid)
    return fleet is not None and token == fleet.provisioning_key


async def get_device(request: web.Request) -> web.Response:
    match = _UUID_FILTER.match(request.query.get("$filter", "").strip())
    if match is None:
        raise web.HTTPBadRequest(text="only $filter=uuid eq '…' is supported here")
    uuid = match.group(1)
    if request.app[CLOUD_KEY].get(uuid) is None or not _allowed(request, uuid):
        return web.json_response({"d": []})
    return web.json_response({"d": [{"id": request.app[TAGS_KEY].device_id(uuid)}]})


async def device_key(request: web.Request) -> web.Response:
    ids = request.app[TAGS_KEY].ids
    wanted = int(request.match_info["id"])
    uuid = next((u for u, i in ids.items() if i == wanted), None)
    fleet = request.app[FLEETS_KEY].of_device(uuid) if uuid is not None else None
    device = request.app[CLOUD_KEY].get(uuid) if uuid is not None else None
    if fleet is None or device is None or _bearer(request) != fleet.provisioning_key:
        raise web.HTTPUnauthorized(text="Unauthorized")
    key = (await _body(request)).get("apiKey") or secrets.token_hex(16)
    if not isinstance(key, str):
        raise web.HTTPBadRequest(text="apiKey must be a string")
    device.api_key = key
    return web.json_response(key)


async def admin_create(request: web.Request) -> web.Response:
    data = await _body(request)
    app_id, key, name = data.get("id"), data.get("provisioning_key"), data.get("name")
    if isinstance(app_id, bool) or not isinstance(app_id, int) or app_id < 1:
        raise web.HTTPBadRequest(text="id must be an integer >= 1")
    if not isinstance(key, str) or not key:
        raise web.HTTPBadRequest(text="provisioning_key must be a non-empty string")
    name = name if isinstance(name, str) else f"fleet-{app_id}"
    fleets = request.app[FLEETS_KEY]
    known = fleets.apps.get(app_id)
    if known is None:
        fleets.apps[app_id] = Application(app_id, name, key)
    else:
        known.name, known.provisioning_key = name, key
    return web.json_response({"id": app_id, "name": name}, status=201)


async def admin_list(request: web.Request) -> web.Response:
    return web.json_response(
        [
            {"id": a.id, "name": a.name, "devices": a.devices, "registrations": a.registrations}
            for a in request.app[FLEETS_KEY].apps.values()
        ]
    )


async def admin_set_target(request: web.Request) -> web.Response:
    fleet = request.app[FLEETS_KEY].apps.get(int(request.match_info["id"]))
    if fleet is None:
        raise web.HTTPNotFound(text="no such application")
    target = await _body(request)
    if not isinstance(target.get("apps", {}), dict):
        raise web.HTTPBadRequest(text="target must be {name, config, apps}")
    fleet.target = target
    return web.json_response({"id": fleet.id})


def add_provisioning_routes(app: web.Application, cloud: Cloud) -> None:
    app[CLOUD_KEY] = cloud
    app[FLEETS_KEY] = Fleets()
    app.router.add_post("/device/register", register)
    app.router.add_get("/v7/device", get_device)
    app.router.add_post(r"/api-key/device/{id:\d+}/device-key", device_key)
    app.router.add_post("/admin/applications", admin_create)
    app.router.add_get("/admin/applications", admin_list)
    app.router.add_put(r"/admin/applications/{id:\d+}/target", admin_set_target)
