"""The devcloud's log-stream receiving side (gzip NDJSON as balena's API takes it, the last
1,000 lines kept, the cut switch) and the Devices page's log panel in headless Chromium."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agent.cloudlogs.wire import GzipStream, encode
from devcloud.connectivity import Connectivity
from devcloud.server import make_app
from devcloud.state import Cloud
from tests.unit.devcloud.browser import browse

UUID = "c0ffee0123456789abcdef0123456789"
TARGET = {
    "name": "log-box",
    "config": {},
    "apps": {
        "a1": {
            "id": 1,
            "name": "demo",
            "releases": {"r1": {"id": 1, "services": {"main": {"id": 7, "image": "x"}}}},
        }
    },
}


async def serve(cloud: Cloud) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(cloud, connectivity=Connectivity(cloud)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def post(url: str, key: str, body: bytes) -> int:
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/device/v2/{UUID}/log-stream", data=body, headers=headers) as resp,
    ):
        return resp.status


def gzip_body(lines: list[bytes]) -> bytes:
    gz = GzipStream()
    return gz.batch(lines) + gz.end()


def fleet() -> Cloud:
    cloud = Cloud()
    device = cloud.register(UUID, "key", "log-box")
    device.target = TARGET
    return cloud


async def test_the_stream_is_decoded_kept_to_the_last_1000_and_refused_when_cut():
    async def go() -> tuple[list[int], dict[str, Any]]:
        runner, url = await serve(fleet())
        try:
            lines = [encode(f"n={i}", i, service_id=7) for i in range(1200)]
            statuses = [
                await post(url, "wrong", gzip_body(lines[:1])),
                await post(url, "key", gzip_body(lines)),
            ]
            async with aiohttp.ClientSession() as s:
                await s.put(f"{url}/admin/devices/{UUID}/logs/cut", json={"cut": True})
                statuses.append(await post(url, "key", gzip_body(lines[:1])))
                async with s.get(f"{url}/admin/devices/{UUID}/logs") as resp:
                    return statuses, await resp.json()
        finally:
            await runner.cleanup()

    statuses, got = await go()
    assert statuses == [401, 201, 503]
    assert got["received"] == 1200 and got["refused"] == 1
    assert [x["message"] for x in got["lines"]] == [f"n={i}" for i in range(200, 1200)]
    assert got["encodings"] == ["gzip"]


async def test_the_devices_page_shows_each_devices_lines_in_chromium(tmp_path: Path):
    now = int(time.time() * 1000)
    lines = [
        encode("Supervisor starting", now - 3000, system=True),
        encode("listening on :80", now - 2000, service_id=7),
        encode("<b>disk</b> nearly full", now - 1000, service_id=7, stderr=True),
        encode("Killing service 'main'", now, system=True),
    ]

    async def go() -> tuple[str, Path]:
        runner, url = await serve(fleet())
        try:
            assert await post(url, "key", gzip_body(lines)) == 201
            dom = await browse(url + "/", "--dump-dom")
            shot = tmp_path / "logs.png"
            await browse(url + "/", f"--screenshot={shot}", "--window-size=1280,520")
            return dom, shot
        finally:
            await runner.cleanup()

    dom, shot = await go()
    assert f'id="logs-{UUID}"' in dom
    panel = dom[dom.index(f'id="logs-{UUID}"') :]
    order = [panel.index(m) for m in ("Supervisor starting", "listening on", "nearly full")]
    assert order == sorted(order), "newest last"
    assert '<li class="logline system" data-system="true">' in panel
    assert '<span class="svc">main</span><span class="msg">listening on :80</span>' in panel
    assert '<li class="logline stderr" data-system="false">' in panel
    assert "&lt;b&gt;disk&lt;/b&gt;" in panel and "<b>disk</b>" not in panel
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    keep = os.environ.get("DEVCLOUD_LOGS_SCREENSHOT")  # to look at it
    if keep:
        shutil.copy(shot, keep)
