"""devcloud: balena device API semantics, admin API, fault injection, client and entry point."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devcloud.client import DevCloudClient, DevCloudError
from devcloud.server import make_app
from devcloud.state import Cloud, etag_for

REPO_ROOT = Path(__file__).resolve().parents[3]
UUID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
KEY = "device-key-1"
APP = "app0000000000000000000000000001"
REL1 = "rel1111111111111111111111111111"
REL2 = "rel2222222222222222222222222222"

TARGET: dict[str, Any] = {
    "name": "dev-one",
    "config": {"BALENA_SUPERVISOR_POLL_INTERVAL": "10000"},
    "apps": {
        APP: {
            "id": 1,
            "name": "demo",
            "class": "fleet",
            "releases": {
                REL1: {
                    "id": 11,
                    "services": {
                        "web": {
                            "id": 111,
                            "image_id": 1111,
                            "image": "registry.local/web@sha256:" + "a" * 64,
                            "environment": {},
                            "labels": {},
                            "composition": {"restart": "always"},
                        }
                    },
                    "volumes": {},
                    "networks": {},
                }
            },
        }
    },
}


@dataclass
class Harness:
    cloud: Cloud
    admin: TestClient[web.Request, web.Application]
    session: aiohttp.ClientSession  # device-side calls, one connection per request

    def url(self, path: str) -> str:
        return str(self.admin.make_url(path))

    async def poll(
        self,
        uuid: str = UUID,
        key: str | None = KEY,
        etag: str | None = None,
        timeout: float = 10.0,
    ) -> aiohttp.ClientResponse:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if etag is not None:
            headers["If-None-Match"] = etag
        resp = await self.session.get(
            self.url(f"/device/v3/{uuid}/state"),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        )
        await resp.read()
        return resp

    async def report(self, body: Any, key: str | None = KEY) -> aiohttp.ClientResponse:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = await self.session.patch(self.url("/device/v3/state"), data=data, headers=headers)
        await resp.read()
        return resp

    async def admin_json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.admin.request(method, path, json=body)
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)

    async def view(self, uuid: str = UUID, since: float | None = None) -> dict[str, Any]:
        path = f"/admin/devices/{uuid}" + ("" if since is None else f"?since={since!r}")
        status, body = await self.admin_json("GET", path)
        assert status == 200, body
        return dict(body)

    async def set_fault(self, mode: str | None, **extra: Any) -> None:
        status, body = await self.admin_json(
            "POST", f"/admin/devices/{UUID}/faults", {"mode": mode, **extra}
        )
        assert status == 200, body


@contextlib.asynccontextmanager
async def devcloud(hold_seconds: float = 70.0, register: bool = True) -> AsyncIterator[Harness]:
    cloud = Cloud()
    server = TestServer(make_app(cloud, hold_seconds=hold_seconds), host="127.0.0.1")
    async with (
        TestClient(server) as admin,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        h = Harness(cloud, admin, session)
        if register:
            status, _ = await h.admin_json(
                "POST", "/admin/devices", {"uuid": UUID, "api_key": KEY, "name": "dev-one"}
            )
            assert status == 201
        yield h


def update_report(release: str, status: str | None, **services: str) -> dict[str, Any]:
    rel: dict[str, Any] = {"services": {n: {"status": s} for n, s in services.items()}}
    if status is not None:
        rel["update_status"] = status
    return {UUID: {"apps": {APP: {"release_uuid": release, "releases": {release: rel}}}}}


# -- GET state ---------------------------------------------------------------------------------


async def test_state_etag_and_304() -> None:
    async with devcloud() as h:
        status, body = await h.admin_json("PUT", f"/admin/devices/{UUID}/target", TARGET)
        assert status == 200
        etag = body["etag"]

        resp = await h.poll()
        assert resp.status == 200
        assert resp.content_type == "application/json"
        raw = await resp.read()
        assert json.loads(raw) == {UUID: TARGET}
        assert resp.headers["ETag"] == etag == etag_for(raw)
        assert etag.startswith('"') and etag.endswith('"')
        assert raw == json.dumps({UUID: TARGET}, sort_keys=True, separators=(",", ":")).encode()

        resp = await h.poll(etag=etag)
        assert resp.status == 304
        assert await resp.read() == b""
        assert resp.headers["ETag"] == etag

        resp = await h.poll(etag=f"W/{etag}")  # weak comparison, as HTTP allows for GET
        assert resp.status == 304

        changed = {**TARGET, "config": {"BALENA_SUPERVISOR_POLL_INTERVAL": "20000"}}
        await h.admin_json("PUT", f"/admin/devices/{UUID}/target", changed)
        resp = await h.poll(etag=etag)
        assert resp.status == 200
        assert resp.headers["ETag"] != etag
        assert json.loads(await resp.read()) == {UUID: changed}

        view = await h.view()
        assert [p["status"] for p in view["polls"]] == [200, 304, 304, 200]
        times = [p["t"] for p in view["polls"]]
        assert times == sorted(times) and abs(times[0] - time.time()) < 10
        assert view["last_poll"] == times[-1]


async def test_state_default_target_before_any_put() -> None:
    async with devcloud() as h:
        resp = await h.poll()
        assert resp.status == 200
        assert json.loads(await resp.read()) == {
            UUID: {"name": "dev-one", "config": {}, "apps": {}}
        }


async def test_state_requires_the_devices_own_key() -> None:
    async with devcloud() as h:
        await h.admin_json("POST", "/admin/devices", {"uuid": "other", "api_key": "other-key"})
        for uuid, key in [(UUID, None), (UUID, "wrong"), (UUID, "other-key"), ("nope", KEY)]:
            resp = await h.poll(uuid=uuid, key=key)
            assert resp.status == 401, (uuid, key)
            assert await resp.text() == "Unauthorized"
            assert resp.content_type == "text/plain"
        resp = await h.session.get(
            h.url(f"/device/v3/{UUID}/state"), headers={"Authorization": f"Basic {KEY}"}
        )
        assert resp.status == 401
        view = await h.view()
        assert [p["status"] for p in view["polls"]] == [401, 401, 401, 401]
        assert view["last_poll"] is None  # rejected polls are no heartbeat


# -- PATCH state -------------------------------------------------------------------------------


async def test_patch_requires_matching_keys() -> None:
    async with devcloud() as h:
        await h.admin_json("POST", "/admin/devices", {"uuid": "other", "api_key": "other-key"})
        body = {UUID: {"status": "Idle"}}
        assert (await h.report(body, key=None)).status == 401
        assert (await h.report(body, key="wrong")).status == 401
        assert (await h.report({"nope": {"status": "Idle"}})).status == 401
        both = {UUID: {"status": "Idle"}, "other": {"status": "Idle"}}
        resp = await h.report(both)
        assert resp.status == 401
        assert await resp.text() == "Unauthorized"
        assert (await h.view())["reports"] == []
        assert (await h.view("other"))["reports"] == []


async def test_patch_records_and_deep_merges() -> None:
    async with devcloud() as h:
        first = {
            UUID: {
                "status": "Idle",
                "os_version": "balenaOS 6.0.0",
                "cpu_usage": 3,
                "apps": {APP: {"release_uuid": REL1, "releases": {REL1: {"services": {}}}}},
            }
        }
        before = time.time()
        resp = await h.report(first)
        assert resp.status == 200
        assert await resp.text() == "OK"
        assert resp.content_type == "text/plain"
        second = {
            UUID: {
                "cpu_usage": 7,
                "ip_address": "10.0.0.2 10.0.0.3",
                "apps": {APP: {"releases": {REL1: {"services": {"web": {"status": "Running"}}}}}},
            }
        }
        assert (await h.report(second)).status == 200

        view = await h.view()
        assert [r["body"] for r in view["reports"]] == [first[UUID], second[UUID]]
        assert before <= view["reports"][0]["t"] <= view["reports"][1]["t"] <= time.time()
        assert view["current"] == {
            "status": "Idle",
            "os_version": "balenaOS 6.0.0",
            "cpu_usage": 7,
            "ip_address": "10.0.0.2 10.0.0.3",
            "apps": {
                APP: {
                    "release_uuid": REL1,
                    "releases": {REL1: {"services": {"web": {"status": "Running"}}}},
                }
            },
        }


async def test_patch_several_devices_sharing_a_key() -> None:
    async with devcloud() as h:
        await h.admin_json("POST", "/admin/devices", {"uuid": "twin", "api_key": KEY})
        resp = await h.report({UUID: {"status": "Idle"}, "twin": {"status": "Updating"}})
        assert resp.status == 200
        assert (await h.view())["current"] == {"status": "Idle"}
        assert (await h.view("twin"))["current"] == {"status": "Updating"}


async def test_patch_rejects_malformed_bodies() -> None:
    async with devcloud() as h:
        assert (await h.report(b"{not json")).status == 400
        assert (await h.report(b"\xff\xfe")).status == 400
        assert (await h.report([1, 2])).status == 400
        assert (await h.report({})).status == 400
        assert (await h.report({UUID: "x"})).status == 400
        assert (await h.report({UUID: {"apps": []}})).status == 400
        resp = await h.report(update_report(REL1, "installing"))
        assert resp.status == 400
        assert "update_status" in await resp.text()
        view = await h.view()
        assert view["reports"] == [] and view["current"] == {}


# -- update status -----------------------------------------------------------------------------


async def test_update_status_transitions_and_history() -> None:
    async with devcloud() as h:
        sequence = [
            (REL1, "downloading"),
            (REL1, "downloading"),  # unchanged: no new event
            (REL1, None),  # no update_status in this report: no event
            (REL1, "downloaded"),
            (REL1, "applying changes"),
            (REL1, "done"),
            (REL2, "done"),  # same status, other release: an event
        ]
        for release, status in sequence:
            assert (await h.report(update_report(release, status, web="Running"))).status == 200
            await asyncio.sleep(0.01)

        view = await h.view()
        report_times = [r["t"] for r in view["reports"]]
        history = view["update_status_history"]
        assert [(e["app_uuid"], e["release_uuid"], e["status"]) for e in history] == [
            (APP, REL1, "downloading"),
            (APP, REL1, "downloaded"),
            (APP, REL1, "applying changes"),
            (APP, REL1, "done"),
            (APP, REL2, "done"),
        ]
        assert [e["t"] for e in history] == [report_times[i] for i in (0, 3, 4, 5, 6)]
        assert view["apps_update_status"] == {
            APP: {"release_uuid": REL2, "status": "done", "since": report_times[6]}
        }


async def test_update_status_with_several_releases_uses_balena_precedence() -> None:
    async with devcloud() as h:
        body = {
            UUID: {
                "apps": {
                    APP: {
                        "release_uuid": REL1,
                        "releases": {
                            REL1: {"update_status": "done"},
                            REL2: {"update_status": "downloading"},
                        },
                    }
                }
            }
        }
        assert (await h.report(body)).status == 200
        assert (await h.report(body)).status == 200  # same pair again: no flapping
        view = await h.view()
        assert [(e["release_uuid"], e["status"]) for e in view["update_status_history"]] == [
            (REL2, "downloading")
        ]


async def test_since_filters_polls_reports_and_history() -> None:
    async with devcloud() as h:
        await h.poll()
        await h.report(update_report(REL1, "downloading"))
        await asyncio.sleep(0.02)
        mark = time.time()
        await asyncio.sleep(0.02)
        await h.poll()
        await h.report(update_report(REL1, "done"))

        full = await h.view()
        assert len(full["polls"]) == 2 and len(full["reports"]) == 2
        assert len(full["update_status_history"]) == 2
        phase = await h.view(since=mark)
        assert len(phase["polls"]) == 1 and phase["polls"][0]["t"] > mark
        assert [r["body"] for r in phase["reports"]] == [update_report(REL1, "done")[UUID]]
        assert [e["status"] for e in phase["update_status_history"]] == ["done"]
        assert phase["current"] == full["current"]
        assert phase["last_poll"] == full["last_poll"]

        status, body = await h.admin_json("GET", f"/admin/devices/{UUID}?since=yesterday")
        assert status == 400 and "since" in body["error"]


# -- raw target --------------------------------------------------------------------------------


async def test_raw_target_is_served_verbatim() -> None:
    async with devcloud() as h:
        raw = b'{"%s": {"name": "x", "apps": "not-an-object"}}' % UUID.encode()
        resp = await h.admin.put(f"/admin/devices/{UUID}/target?raw=1", data=raw)
        assert resp.status == 200
        etag = (await resp.json())["etag"]
        assert etag == etag_for(raw)

        resp = await h.poll()
        assert resp.status == 200
        assert await resp.read() == raw
        assert resp.headers["ETag"] == etag
        assert (await h.poll(etag=etag)).status == 304

        view = await h.view()
        assert view["raw_target"] == raw.decode() and view["target"] is None

        await h.admin_json("PUT", f"/admin/devices/{UUID}/target", TARGET)  # back to normal
        resp = await h.poll()
        assert json.loads(await resp.read()) == {UUID: TARGET}
        assert (await h.view())["raw_target"] is None


# -- faults ------------------------------------------------------------------------------------


async def test_fault_500_with_count() -> None:
    async with devcloud() as h:
        await h.set_fault("500", count=2)
        assert (await h.poll()).status == 500
        assert (await h.view())["fault"] == {"mode": "500", "count": 1, "retry_after": None}
        assert (await h.poll()).status == 500
        assert (await h.poll()).status == 200
        view = await h.view()
        assert view["fault"] is None
        assert [p["status"] for p in view["polls"]] == [500, 500, 200]


async def test_fault_503_retry_after_until_cleared() -> None:
    async with devcloud() as h:
        await h.set_fault("503_retry_after", retry_after=7)
        for _ in range(3):
            resp = await h.poll()
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "7"
        await h.set_fault(None)
        assert (await h.poll()).status == 200
        await h.set_fault("503_retry_after", count=1)
        resp = await h.poll()
        assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
        assert [p["status"] for p in (await h.view())["polls"]] == [503, 503, 503, 200, 503]


async def test_fault_garbage_and_not_target() -> None:
    async with devcloud() as h:
        await h.set_fault("garbage", count=1)
        resp = await h.poll()
        assert resp.status == 200
        with pytest.raises(ValueError):
            json.loads(await resp.read())
        await h.set_fault("not_target", count=1)
        resp = await h.poll()
        assert resp.status == 200
        assert json.loads(await resp.read()) == {"hello": "world"}
        assert (await h.poll()).status == 200
        assert [p["status"] for p in (await h.view())["polls"]] == [200, 200, 200]


async def test_fault_close_drops_the_connection() -> None:
    async with devcloud() as h:
        # aiohttp's client retries an idempotent request once after a dropped connection
        # (RFC 9112 9.3.1), so one "close" is invisible to it: it takes two to surface.
        await h.set_fault("close", count=1)
        assert (await h.poll()).status == 200
        assert [p["status"] for p in (await h.view())["polls"]] == [0, 200]

        await h.set_fault("close", count=2)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await h.poll()
        assert (await h.poll()).status == 200
        assert [p["status"] for p in (await h.view())["polls"]] == [0, 200, 0, 0, 200]


async def test_fault_timeout_holds_until_cleared() -> None:
    async with devcloud(hold_seconds=70) as h:
        await h.set_fault("timeout")
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await h.poll(timeout=0.3)
        assert time.monotonic() - started < 5
        assert [p["status"] for p in (await h.view())["polls"]] == [0]

        # A poll held by the server is released (connection closed) when the fault changes.
        held = asyncio.create_task(h.poll(timeout=30))
        await asyncio.sleep(0.2)
        assert not held.done()
        await h.set_fault(None)
        resp = await asyncio.wait_for(held, 5)  # dropped, then aiohttp's retry is answered
        assert resp.status == 200
        assert [p["status"] for p in (await h.view())["polls"]] == [0, 0, 200]


async def test_fault_timeout_gives_up_after_hold_seconds() -> None:
    async with devcloud(hold_seconds=0.3) as h:
        await h.set_fault("timeout", count=2)  # two: aiohttp retries once after a drop
        started = time.monotonic()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await h.poll(timeout=10)
        assert 0.55 < time.monotonic() - started < 5
        assert [p["status"] for p in (await h.view())["polls"]] == [0, 0]


async def test_shutdown_does_not_wait_for_held_polls() -> None:
    started = time.monotonic()
    async with devcloud(hold_seconds=70) as h:
        await h.set_fault("timeout")
        held = asyncio.create_task(h.poll(timeout=30))
        await asyncio.sleep(0.2)
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        await asyncio.wait_for(held, 5)
    assert time.monotonic() - started < 10


async def test_fault_applies_only_after_auth() -> None:
    async with devcloud() as h:
        await h.set_fault("500", count=1)
        assert (await h.poll(key="wrong")).status == 401
        assert (await h.poll()).status == 500


# -- admin API ---------------------------------------------------------------------------------


async def test_admin_register_is_idempotent_and_keeps_records() -> None:
    async with devcloud() as h:
        await h.admin_json("PUT", f"/admin/devices/{UUID}/target", TARGET)
        await h.poll()
        await h.report({UUID: {"status": "Idle"}})
        status, body = await h.admin_json(
            "POST", "/admin/devices", {"uuid": UUID, "api_key": "new-key"}
        )
        assert (status, body) == (201, {"uuid": UUID})
        assert (await h.poll()).status == 401
        assert (await h.poll(key="new-key")).status == 200
        view = await h.view()
        assert view["name"] == "dev-one" and view["target"] == TARGET
        assert len(view["polls"]) == 3 and len(view["reports"]) == 1


async def test_admin_list_and_clear_records() -> None:
    async with devcloud() as h:
        await h.admin_json("POST", "/admin/devices", {"uuid": "second", "api_key": "k2"})
        await h.admin_json("PUT", f"/admin/devices/{UUID}/target", TARGET)
        await h.poll()
        await h.report(update_report(REL1, "done"))

        status, devices = await h.admin_json("GET", "/admin/devices")
        assert status == 200
        assert [d["uuid"] for d in devices] == [UUID, "second"]
        assert devices[0]["polls"] == 1 and devices[0]["reports"] == 1

        status, _ = await h.admin_json("POST", f"/admin/devices/{UUID}/clear-records")
        assert status == 200
        view = await h.view()
        assert view["polls"] == [] and view["reports"] == []
        assert view["update_status_history"] == []
        assert view["target"] == TARGET
        assert view["current"] != {} and view["apps_update_status"][APP]["status"] == "done"
        assert view["last_poll"] is None


async def test_admin_errors() -> None:
    async with devcloud() as h:
        for method, path, body in [
            ("GET", "/admin/devices/nope", None),
            ("PUT", "/admin/devices/nope/target", TARGET),
            ("POST", "/admin/devices/nope/faults", {"mode": "500"}),
            ("POST", "/admin/devices/nope/clear-records", None),
        ]:
            status, answer = await h.admin_json(method, path, body)
            assert status == 404 and "nope" in answer["error"], (method, path)

        bad: list[tuple[str, str, Any]] = [
            ("POST", "/admin/devices", {"api_key": "k"}),
            ("POST", "/admin/devices", {"uuid": "u"}),
            ("POST", "/admin/devices", {"uuid": "u", "api_key": "k", "name": 3}),
            ("POST", "/admin/devices", [1]),
            ("PUT", f"/admin/devices/{UUID}/target", ["not", "an", "object"]),
            ("POST", f"/admin/devices/{UUID}/faults", {"mode": "explode"}),
            ("POST", f"/admin/devices/{UUID}/faults", {"mode": "500", "count": 0}),
            ("POST", f"/admin/devices/{UUID}/faults", {"mode": "500", "count": True}),
            (
                "POST",
                f"/admin/devices/{UUID}/faults",
                {"mode": "503_retry_after", "retry_after": -1},
            ),
        ]
        for method, path, body in bad:
            status, answer = await h.admin_json(method, path, body)
            assert status == 400 and answer["error"], (method, path, body)
        resp = await h.admin.post("/admin/devices", data=b"{nope")
        assert resp.status == 400 and "JSON" in (await resp.json())["error"]


# -- client (sync, against a server in a thread) -----------------------------------------------


@contextlib.contextmanager
def threaded_devcloud() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(Cloud(), hold_seconds=1.0))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def http_get(url: str, key: str, etag: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    if etag:
        req.add_header("If-None-Match", etag)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_client_round_trip() -> None:
    with threaded_devcloud() as base:
        client = DevCloudClient(base + "/")
        assert client.register(UUID, KEY, name="dev-one") == {"uuid": UUID}
        etag = client.set_target(UUID, TARGET)
        state_url = f"{base}/device/v3/{UUID}/state"
        assert http_get(state_url, KEY) == (
            200,
            json.dumps({UUID: TARGET}, sort_keys=True, separators=(",", ":")).encode(),
        )
        assert http_get(state_url, KEY, etag)[0] == 304
        mark = time.time()
        time.sleep(0.01)

        client.set_fault(UUID, "503_retry_after", count=1, retry_after=3)
        assert http_get(state_url, KEY)[0] == 503
        assert client.device(UUID)["fault"] is None

        raw_etag = client.set_raw_target(UUID, {UUID: {"weird": True}})
        assert http_get(state_url, KEY) == (200, json.dumps({UUID: {"weird": True}}).encode())
        assert raw_etag != etag
        client.set_raw_target(UUID, "not json at all")
        assert http_get(state_url, KEY) == (200, b"not json at all")

        view = client.device(UUID)
        assert [p["status"] for p in view["polls"]] == [200, 304, 503, 200, 200]
        assert [p["status"] for p in client.device(UUID, since=mark)["polls"]] == [503, 200, 200]
        assert [d["uuid"] for d in client.devices()] == [UUID]

        client.clear_records(UUID)
        assert client.device(UUID)["polls"] == []
        client.clear_fault(UUID)
        with pytest.raises(DevCloudError) as err:
            client.device("unknown")
        assert err.value.status == 404


# -- entry point -------------------------------------------------------------------------------


def start_devcloud(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port_file = tmp_path / "devcloud.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devcloud",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            *extra,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"devcloud did not start: {err.decode()}")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def test_entry_point_writes_port_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc, port = start_devcloud(tmp_path, "--device", f"{UUID}:{KEY}:dev-one", "--device", "u2:k2")
    try:
        assert port > 0
        status, body = http_get(f"http://127.0.0.1:{port}/device/v3/{UUID}/state", KEY)
        assert status == 200
        assert json.loads(body) == {UUID: {"name": "dev-one", "config": {}, "apps": {}}}
        assert http_get(f"http://127.0.0.1:{port}/device/v3/u2/state", "k2")[0] == 200
        assert list(tmp_path.iterdir()) == [tmp_path / "devcloud.port"]  # no temp file left
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert f'GET /device/v3/{UUID}/state HTTP/1.1" 200' in err.decode()


def test_entry_point_sigterm_with_a_held_poll(tmp_path: Path) -> None:
    proc, port = start_devcloud(tmp_path, "--device", f"{UUID}:{KEY}")
    errors: list[BaseException] = []

    def held_poll() -> None:
        try:
            http_get(f"http://127.0.0.1:{port}/device/v3/{UUID}/state", KEY)
        except BaseException as exc:  # the connection is dropped: that's expected
            errors.append(exc)

    try:
        DevCloudClient(f"http://127.0.0.1:{port}").set_fault(UUID, "timeout")
        thread = threading.Thread(target=held_poll, daemon=True)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert time.monotonic() - started < 10
    thread.join(5)
    assert not thread.is_alive()
