"""Device tags, the way the balena API serves them to a device (its OData resources, reduced to
what the supervisor uses): `GET /v6/device?$filter=uuid eq '…'` for the device's id, `GET
/v6/device_tag?$filter=device/uuid eq '…'`, `POST /v6/device_tag`, `PATCH /v6/device_tag(id)`,
and the route the reference supervisor (17.8+) sends the tags an app sets with: `PATCH
/device/v3/tags` with `{uuid: {tagKey: value}}` (creates or updates each tag of each device the
key may act for; 500 / 503 while the device has a "500" / "503_retry_after" fault).

Plus `GET|PUT /admin/devices/{uuid}/tags` for tests; every device-v3 tags request is recorded
(`GET /admin/devices/{uuid}/tags?requests=1`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devcloud.state import DEFAULT_RETRY_AFTER, Cloud, Device
from devcloud.trickle import send_json

_UUID_FILTER = re.compile(r"^(?:device/)?uuid eq '([^']+)'$")


@dataclass
class Tags:
    ids: dict[str, int] = field(default_factory=dict)  # device uuid -> numeric id
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # tag id -> row
    next_tag: int = 1
    requests: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # PATCH /device/v3/tags

    def device_id(self, uuid: str) -> int:
        return self.ids.setdefault(uuid, len(self.ids) + 1)

    def of(self, uuid: str) -> list[dict[str, Any]]:
        return [
            {"id": i, "tag_key": r["tag_key"], "value": r["value"]}
            for i, r in sorted(self.rows.items())
            if r["device"] == uuid
        ]

    def put(self, uuid: str, key: str, value: str) -> None:
        for row in self.rows.values():
            if row["device"] == uuid and row["tag_key"] == key:
                row["value"] = value
                return
        self.rows[self.next_tag] = {"device": uuid, "tag_key": key, "value": value}
        self.next_tag += 1


TAGS_KEY = web.AppKey("devcloud_tags", Tags)
CLOUD_REF_KEY = web.AppKey("devcloud_tags_cloud", Cloud)


def _authed(request: web.Request, uuid: str) -> Device:
    cloud = request.app[CLOUD_REF_KEY]
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else None
    device = cloud.authenticate(uuid, token)
    if device is None:
        raise web.HTTPUnauthorized(text="Unauthorized")
    return device


def _filtered_uuid(request: web.Request) -> str:
    match = _UUID_FILTER.match(request.query.get("$filter", "").strip())
    if match is None:
        raise web.HTTPBadRequest(text="only $filter=uuid eq '…' is supported here")
    return match.group(1)


async def get_device(request: web.Request) -> web.StreamResponse:
    uuid = _filtered_uuid(request)
    device = _authed(request, uuid)
    tags = request.app[TAGS_KEY]
    trickle = request.app[CLOUD_REF_KEY].trickle_for(device)
    return await send_json(request, trickle, {"d": [{"id": tags.device_id(uuid)}]})


async def get_tags(request: web.Request) -> web.StreamResponse:
    uuid = _filtered_uuid(request)
    device = _authed(request, uuid)
    trickle = request.app[CLOUD_REF_KEY].trickle_for(device)
    return await send_json(request, trickle, {"d": request.app[TAGS_KEY].of(uuid)})


async def post_tag(request: web.Request) -> web.Response:
    tags = request.app[TAGS_KEY]
    body = json.loads(await request.read() or b"{}")
    uuid = next((u for u, i in tags.ids.items() if i == body.get("device")), None)
    if uuid is None:
        raise web.HTTPBadRequest(text="unknown device id")
    _authed(request, uuid)
    tags.put(uuid, str(body["tag_key"]), str(body["value"]))
    return web.json_response({"tag_key": body["tag_key"], "value": body["value"]}, status=201)


async def patch_tag(request: web.Request) -> web.Response:
    tags = request.app[TAGS_KEY]
    row = tags.rows.get(int(request.match_info["id"]))
    if row is None:
        raise web.HTTPNotFound(text="no such tag")
    _authed(request, row["device"])
    row["value"] = str(json.loads(await request.read() or b"{}")["value"])
    return web.Response(text="OK")


async def patch_v3_tags(request: web.Request) -> web.Response:
    tags = request.app[TAGS_KEY]
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    valid = isinstance(body, dict) and all(
        isinstance(per, dict) and all(isinstance(v, str) for v in per.values())
        for per in body.values()
    )
    if not valid or not body:
        raise web.HTTPBadRequest(text="body must be {uuid: {tagKey: value}}")
    devices = [_authed(request, uuid) for uuid in body]
    for device in devices:  # a cloud that fails this device's polls fails its tags too
        fault = device.fault
        if fault is not None and fault.mode == "500":
            return web.Response(status=500, text="Internal Server Error")
        if fault is not None and fault.mode == "503_retry_after":
            retry = DEFAULT_RETRY_AFTER if fault.retry_after is None else fault.retry_after
            return web.Response(
                status=503, text="Service Unavailable", headers={"Retry-After": str(retry)}
            )
    for uuid, per in body.items():
        tags.device_id(uuid)
        tags.requests.setdefault(uuid, []).append(dict(per))
        for key, value in per.items():
            tags.put(uuid, key, value)
    return web.Response(text="OK")


async def admin_tags(request: web.Request) -> web.Response:
    tags = request.app[TAGS_KEY]
    uuid = request.match_info["uuid"]
    if request.query.get("requests"):
        return web.json_response(tags.requests.get(uuid, []))
    if request.method == "PUT":
        for key, value in json.loads(await request.read()).items():
            tags.put(uuid, key, str(value))
    return web.json_response({r["tag_key"]: r["value"] for r in tags.of(uuid)})


def add_tag_routes(app: web.Application, cloud: Cloud) -> None:
    app[CLOUD_REF_KEY] = cloud
    app[TAGS_KEY] = Tags()
    app.router.add_get("/v6/device", get_device)
    app.router.add_get("/v6/device_tag", get_tags)
    app.router.add_post("/v6/device_tag", post_tag)
    app.router.add_patch(r"/v6/device_tag({id:\d+})", patch_tag)
    app.router.add_patch("/device/v3/tags", patch_v3_tags)
    app.router.add_get("/admin/devices/{uuid}/tags", admin_tags)
    app.router.add_put("/admin/devices/{uuid}/tags", admin_tags)
