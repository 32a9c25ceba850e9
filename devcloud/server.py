"""HTTP face of the devcloud: balena's device API (v3 state GET/PATCH) plus an admin API.

Device API (as balena's):
  GET   /device/v3/{uuid}/state   Bearer <device api key>; ETag / If-None-Match -> 304
  PATCH /device/v3/state          Bearer <device api key>; body {uuid: {...report...}}
  GET   /ping                     "OK"
Admin API (JSON, no auth) under /admin: see the devcloud package docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, NoReturn

from aiohttp import web

from devcloud.connectivity import CONNECTIVITY_KEY, Connectivity, install
from devcloud.logs import add_log_routes
from devcloud.pages import add_page_routes
from devcloud.provisioning import add_provisioning_routes
from devcloud.state import (
    DEFAULT_RETRY_AFTER,
    FAULT_MODES,
    Cloud,
    Device,
    Fault,
    ReportError,
    Trickle,
    Vpn,
    etag_for,
    validate_report,
)
from devcloud.tags import add_tag_routes
from devcloud.trickle import send_body

log = logging.getLogger("devcloud")

DEFAULT_HOLD_SECONDS = 70.0  # longer than the supervisor's 59 s request timeout
GARBAGE_BODY = b'<html><body>502 Bad Gateway</body></html>\n{"truncated": '
NOT_TARGET_BODY = b'{"hello":"world"}'
NO_RESPONSE = 444  # what the access log shows for a connection dropped without an answer


class Holds:
    """Requests held by the "timeout" fault, released on a fault change or on shutdown."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.closing = False
        self._events: dict[str, asyncio.Event] = {}

    async def hold(self, uuid: str) -> None:
        if self.closing:
            return
        event = self._events.setdefault(uuid, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.seconds)

    def wake(self, uuid: str) -> None:
        event = self._events.pop(uuid, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        self.closing = True
        for event in self._events.values():
            event.set()
        self._events.clear()


CLOUD_KEY = web.AppKey("devcloud_cloud", Cloud)
HOLDS_KEY = web.AppKey("devcloud_holds", Holds)


# -- helpers ---------------------------------------------------------------------------------


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _unauthorized() -> web.Response:
    return web.Response(status=401, text="Unauthorized")


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate in ("*", etag):
            return True
    return False


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _admin_error(status: int, message: str) -> NoReturn:
    body = json.dumps({"error": message})
    if status == 404:
        raise web.HTTPNotFound(text=body, content_type="application/json")
    raise web.HTTPBadRequest(text=body, content_type="application/json")


def _drop_connection(request: web.Request) -> web.Response:
    """Close the socket without answering; aiohttp then fails to write the response and
    treats it as a client disconnect (no traceback), logging NO_RESPONSE."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=NO_RESPONSE, reason="Connection Closed Without Response")


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        _admin_error(400, "body is not valid JSON")


def _admin_device(request: web.Request) -> Device:
    uuid = request.match_info["uuid"]
    device = request.app[CLOUD_KEY].get(uuid)
    if device is None:
        _admin_error(404, f"unknown device {uuid}")
    return device


def _opt_int(data: dict[str, Any], key: str, minimum: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _admin_error(400, f"{key} must be null or an integer >= {minimum}")
    return value


# -- device API ------------------------------------------------------------------------------


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def get_state(request: web.Request) -> web.StreamResponse:
    cloud = request.app[CLOUD_KEY]
    uuid = request.match_info["uuid"]
    t = time.time()
    device = cloud.get(uuid)
    if device is None or _bearer(request) != device.api_key:
        if device is not None:
            cloud.record_poll(device, 401, t)
        return _unauthorized()

    fault = device.take_fault()
    if fault is not None:
        return await _faulted_poll(request, cloud, device, fault, t)

    body = device.document()
    etag = etag_for(body)
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        cloud.record_poll(device, 304, t)
        return web.Response(status=304, headers={"ETag": etag})
    cloud.record_poll(device, 200, t)
    return await send_body(request, cloud.trickle_for(device), body, headers={"ETag": etag})


async def _faulted_poll(
    request: web.Request, cloud: Cloud, device: Device, fault: Fault, t: float
) -> web.StreamResponse:
    log.info("fault %s on poll of %s (left: %s)", fault.mode, device.uuid, fault.count)
    mode = fault.mode
    if mode == "500":
        cloud.record_poll(device, 500, t)
        return web.Response(status=500, text="Internal Server Error")
    if mode == "503_retry_after":
        retry_after = DEFAULT_RETRY_AFTER if fault.retry_after is None else fault.retry_after
        cloud.record_poll(device, 503, t)
        return web.Response(
            status=503, text="Service Unavailable", headers={"Retry-After": str(retry_after)}
        )
    if mode == "timeout":
        cloud.record_poll(device, 0, t)
        await request.app[HOLDS_KEY].hold(device.uuid)
        return _drop_connection(request)
    if mode == "close":
        cloud.record_poll(device, 0, t)
        return _drop_connection(request)
    if mode == "garbage":
        cloud.record_poll(device, 200, t)
        return web.Response(body=GARBAGE_BODY, content_type="application/json")
    if mode == "not_target":
        cloud.record_poll(device, 200, t)
        return web.Response(body=NOT_TARGET_BODY, content_type="application/json")
    raise AssertionError(f"unknown fault mode {mode!r}")  # set_fault validates modes


async def patch_state(request: web.Request) -> web.Response:
    cloud = request.app[CLOUD_KEY]
    t = time.time()
    token = _bearer(request)
    if token is None:
        return _unauthorized()
    try:
        payload = json.loads(await request.read())
    except ValueError:
        return web.Response(status=400, text="Malformed JSON")
    if not isinstance(payload, dict):
        return web.Response(status=400, text="Body must be an object keyed by device uuid")
    bodies = {uuid: body for uuid, body in payload.items() if body is not None}
    if not bodies:
        return web.Response(status=400, text="No device state in body")

    devices: list[tuple[Device, dict[str, Any]]] = []
    for uuid, body in bodies.items():
        device = cloud.authenticate(uuid, token)
        if device is None:
            return _unauthorized()
        devices.append((device, body))
    try:
        for device, body in devices:
            validate_report(device.uuid, body)
    except ReportError as exc:
        return web.Response(status=400, text=str(exc))

    for device, body in devices:
        device.apply_report(body, t)
    return web.Response(text="OK")


# -- admin API -------------------------------------------------------------------------------


async def admin_register(request: web.Request) -> web.Response:
    data = await _json_body(request)
    if not isinstance(data, dict):
        _admin_error(400, "body must be an object {uuid, api_key, name?, vpn?}")
    uuid, api_key, name = data.get("uuid"), data.get("api_key"), data.get("name")
    if not isinstance(uuid, str) or not uuid or "/" in uuid:
        _admin_error(400, "uuid must be a non-empty string without '/'")
    if not isinstance(api_key, str) or not api_key:
        _admin_error(400, "api_key must be a non-empty string")
    if name is not None and not isinstance(name, str):
        _admin_error(400, "name must be a string")
    vpn = None
    if data.get("vpn") is not None:
        try:
            vpn = Vpn.from_json(data["vpn"])
        except ValueError as exc:
            _admin_error(400, str(exc))
    request.app[CLOUD_KEY].register(uuid, api_key, name, vpn)
    return _json({"uuid": uuid}, status=201)


async def admin_list(request: web.Request) -> web.Response:
    connectivity = request.app[CONNECTIVITY_KEY]
    return _json(
        [
            {**d.summary(), "connectivity": connectivity.of(d).to_json()}
            for d in request.app[CLOUD_KEY].devices.values()
        ]
    )


async def admin_get(request: web.Request) -> web.Response:
    device = _admin_device(request)
    since: float | None = None
    if "since" in request.query:
        try:
            since = float(request.query["since"])
        except ValueError:
            _admin_error(400, "since must be a number (unix time)")
    connectivity = request.app[CONNECTIVITY_KEY]
    return _json(
        {
            **device.view(since),
            "connectivity": connectivity.of(device).to_json(),
            "status_history": connectivity.history(device.uuid, since),
        }
    )


async def admin_set_target(request: web.Request) -> web.Response:
    device = _admin_device(request)
    cloud = request.app[CLOUD_KEY]
    if request.query.get("raw", "").lower() in ("1", "true", "yes"):
        etag = cloud.set_raw_target(device.uuid, await request.read())
        return _json({"etag": etag})
    target = await _json_body(request)
    if not isinstance(target, dict):
        _admin_error(400, "target must be an object {name, config, apps} (or use ?raw=1)")
    return _json({"etag": cloud.set_target(device.uuid, target)})


async def admin_set_fault(request: web.Request) -> web.Response:
    device = _admin_device(request)
    data = await _json_body(request)
    if not isinstance(data, dict):
        _admin_error(400, "body must be an object {mode, count, retry_after}")
    mode = data.get("mode")
    if mode is not None and mode not in FAULT_MODES:
        _admin_error(400, f"mode must be null or one of {', '.join(FAULT_MODES)}")
    count = _opt_int(data, "count", 1)
    retry_after = _opt_int(data, "retry_after", 0)
    device.fault = None if mode is None else Fault(mode, count, retry_after)
    request.app[HOLDS_KEY].wake(device.uuid)
    log.info("fault for %s set to %s", device.uuid, device.fault)
    return _json({"uuid": device.uuid, "fault": device.view()["fault"]})


def _trickle_body(data: Any) -> Trickle | None:
    try:
        return Trickle.from_json(data)
    except ValueError as exc:
        _admin_error(400, str(exc))


async def admin_set_trickle(request: web.Request) -> web.Response:
    """PUT /admin/devices/{uuid}/trickle {chunk_bytes, pause_ms} | null: how this device's
    answers are sent (null: as the cloud-wide setting says)."""
    device = _admin_device(request)
    device.trickle = _trickle_body(await _json_body(request))
    log.info("trickle for %s set to %s", device.uuid, device.trickle)
    return _json({"uuid": device.uuid, "trickle": device.view()["trickle"]})


async def admin_set_cloud_trickle(request: web.Request) -> web.Response:
    """PUT /admin/trickle {chunk_bytes, pause_ms} | null: the setting for every device
    without its own."""
    cloud = request.app[CLOUD_KEY]
    cloud.trickle = _trickle_body(await _json_body(request))
    log.info("cloud-wide trickle set to %s", cloud.trickle)
    return _json({"trickle": cloud.trickle.to_json() if cloud.trickle else None})


async def admin_clear_records(request: web.Request) -> web.Response:
    device = _admin_device(request)
    device.clear_records()
    return _json({"uuid": device.uuid})


async def _on_shutdown(app: web.Application) -> None:
    app[HOLDS_KEY].wake_all()


def make_app(
    cloud: Cloud,
    *,
    hold_seconds: float = DEFAULT_HOLD_SECONDS,
    connectivity: Connectivity | None = None,
) -> web.Application:
    """The devcloud application; `hold_seconds` bounds how long the "timeout" fault holds;
    `connectivity` watches the tunnel endpoints (default: none, heartbeat only)."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[CLOUD_KEY] = cloud
    install(app, connectivity or Connectivity(cloud))
    app[HOLDS_KEY] = Holds(hold_seconds)
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/ping", ping)
    app.router.add_get("/device/v3/{uuid}/state", get_state)
    app.router.add_patch("/device/v3/state", patch_state)
    app.router.add_post("/admin/devices", admin_register)
    app.router.add_get("/admin/devices", admin_list)
    app.router.add_get("/admin/devices/{uuid}", admin_get)
    app.router.add_put("/admin/devices/{uuid}/target", admin_set_target)
    app.router.add_post("/admin/devices/{uuid}/faults", admin_set_fault)
    app.router.add_post("/admin/devices/{uuid}/clear-records", admin_clear_records)
    app.router.add_put("/admin/devices/{uuid}/trickle", admin_set_trickle)
    app.router.add_put("/admin/trickle", admin_set_cloud_trickle)
    add_tag_routes(app, cloud)
    add_log_routes(app, cloud)
    add_provisioning_routes(app, cloud)  # after the tags: it shares their device ids
    add_page_routes(app)
    return app
