"""The Devices page as a real browser renders it: headless Chromium's DOM, and a screenshot.
Chromium missing is a failure (scripts/setup installs the Debian package), never a skip."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from aiohttp import web

from devcloud.connectivity import Connectivity
from devcloud.server import make_app
from devcloud.state import AppUpdateStatus, Cloud, Vpn
from tests.unit.devcloud.browser import browse

ROLLED_BACK = "rolled back: main exited 3 times in 40 s (exit 1)"


def fleet() -> Cloud:
    now = time.time()
    cloud = Cloud()
    bitter = cloud.register("b1773e5d0c0a4f0e9e1d", "k1", "bitter-wind")
    cloud.record_poll(bitter, 200, now - 2)
    bitter.apps_update_status["app"] = AppUpdateStatus("rel", "done", now - 17 * 60 - 5)
    waiting = {"update_status": "downloaded", "update_reason": "waiting for the update window"}
    rolled_back = {"update_status": "aborted", "update_reason": ROLLED_BACK}
    releases = {"rel2": waiting, "rel3": rolled_back}
    bitter.current["apps"] = {"app": {"release_uuid": "rel", "releases": releases}}
    vpn = Vpn("wireguard", public_key="PUB=", keepalive_s=1)
    cloud.register("0ff11e4e5a6b7c8d9e0f", "k2", "<i>quiet-lake</i>", vpn)
    return cloud


async def test_devices_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    async def go() -> tuple[str, Path]:
        cloud = fleet()
        runner = web.AppRunner(make_app(cloud, connectivity=Connectivity(cloud)))
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
            dom = await browse(url, "--dump-dom")
            shot = tmp_path / "devices.png"
            await browse(url, f"--screenshot={shot}")
            return dom, shot
        finally:
            await runner.cleanup()

    dom, shot = await go()
    assert 'id="device-b1773e5d0c0a4f0e9e1d"' in dom
    assert 'data-status="Operational"' in dom
    assert ">Operational</span><small>Online</small>" in dom
    assert "<td>Done</td><td>17 minutes</td>" in dom
    assert '<code data-running="app">rel</code>' in dom
    assert '<code title="rel2">rel2</code> downloaded' in dom
    assert '<small class="why">waiting for the update window</small>' in dom
    assert '<code title="rel3">rel3</code> aborted' in dom
    assert f'<small class="why">{ROLLED_BACK}</small>' in dom
    assert 'id="device-0ff11e4e5a6b7c8d9e0f"' in dom
    assert ">Inactive</span>" in dom
    assert "&lt;i&gt;quiet-lake&lt;/i&gt;" in dom and "<i>quiet-lake</i>" not in dom
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    keep = os.environ.get("DEVCLOUD_SCREENSHOT")  # to look at it: DEVCLOUD_SCREENSHOT=/tmp/x.png
    if keep:
        shutil.copy(shot, keep)
