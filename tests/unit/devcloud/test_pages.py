"""The Devices page: rows, indicators, update status duration, escaping, and the admin API's
`vpn` registration and `connectivity` views that feed it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devcloud.connectivity import Connectivity
from devcloud.pages import humanize, render_devices
from devcloud.server import make_app
from devcloud.state import AppUpdateStatus, Cloud, Vpn

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1.9, "1 second"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (17 * 60 + 59, "17 minutes"),
        (3600, "1 hour"),
        (2 * 86400 + 5, "2 days"),
        (-3, "0 seconds"),
    ],
)
def test_humanize(seconds: float, text: str) -> None:
    assert humanize(seconds) == text


def fleet() -> tuple[Cloud, Connectivity]:
    cloud = Cloud()
    conn = Connectivity(cloud, poll_interval_ms=10_000, clock=lambda: T0)
    bitter = cloud.register("0123456789abcdef", "k1", "bitter-wind")
    cloud.record_poll(bitter, 200, T0 - 3)
    bitter.apps_update_status["app"] = AppUpdateStatus("rel", "downloaded", T0 - 17 * 60)
    quiet = cloud.register("fedcba9876543210", "k2", "<b>quiet</b> & co", Vpn("openvpn", None, "x"))
    cloud.record_poll(quiet, 304, T0 - 40)
    return cloud, conn


def page() -> str:
    cloud, conn = fleet()
    return render_devices([(d, conn.of(d)) for d in cloud.devices.values()], T0)


def row(html: str, uuid: str) -> str:
    start = html.index(f'<tr class="device" id="device-{uuid}"')
    return html[start : html.index("</tr>", start)]


def test_page_lists_each_device_with_its_status_indicators_and_update_status() -> None:
    html = page()
    assert '<meta http-equiv="refresh" content="2">' in html
    assert "2 devices" in html
    bitter = row(html, "0123456789abcdef")
    assert "<td>bitter-wind</td>" in bitter
    assert '<code title="0123456789abcdef">0123456</code>' in bitter
    assert 'data-status="Updating"' in bitter  # downloaded, connected: the device is updating
    assert ">Updating</span><small>Updating</small>" in bitter
    assert (
        'data-heartbeat="on"' in bitter and 'title="Heartbeat: last poll 3 seconds ago"' in bitter
    )
    assert 'data-cloudlink="na"' in bitter and "Cloudlink: disabled" in bitter
    assert "<td>Downloaded</td><td>17 minutes</td>" in bitter
    assert "3 seconds ago" in bitter


def test_page_shows_broken_links_and_escapes_everything() -> None:
    html = page()
    quiet = row(html, "fedcba9876543210")
    assert "<b>quiet</b>" not in html
    assert "<td>&lt;b&gt;quiet&lt;/b&gt; &amp; co</td>" in quiet
    assert ">Disconnected</span><small>Offline</small>" in quiet
    assert 'data-heartbeat="off"' in quiet and 'data-cloudlink="off"' in quiet
    assert "openvpn down: devcloud has no --openvpn-status" in quiet
    assert "<td>—</td><td>—</td>" in quiet  # no update status yet


def test_empty_fleet() -> None:
    assert "No devices yet." in render_devices([], T0)


@contextlib.asynccontextmanager
async def served(cloud: Cloud, conn: Connectivity) -> AsyncIterator[TestClient[Any, Any]]:
    server = TestServer(make_app(cloud, connectivity=conn), host="127.0.0.1")
    async with TestClient(server) as client:
        yield client


async def test_pages_and_admin_views_over_http() -> None:
    cloud, conn = fleet()
    async with served(cloud, conn) as client:
        for path in ("/", "/devices"):
            resp = await client.get(path)
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "bitter-wind" in await resp.text()
        devices = await (await client.get("/admin/devices")).json()
        by_uuid = {d["uuid"]: d["connectivity"]["status"] for d in devices}
        assert by_uuid == {"0123456789abcdef": "Updating", "fedcba9876543210": "Disconnected"}
        view = await (await client.get("/admin/devices/fedcba9876543210")).json()
        assert view["vpn"] == {"kind": "openvpn", "common_name": "x", "keepalive_s": 25}
        assert view["connectivity"]["cloudlink"]["kind"] == "openvpn"
        assert isinstance(view["status_history"], list)


@pytest.mark.parametrize(
    ("vpn", "error"),
    [
        ({"kind": "ipsec"}, "kind in"),
        ({"kind": "wireguard"}, "vpn.public_key"),
        ({"kind": "openvpn", "common_name": ""}, "vpn.common_name"),
        ({"kind": "wireguard", "public_key": "k", "keepalive_s": -1}, "keepalive_s"),
        ("wireguard", "kind in"),
    ],
)
async def test_registration_rejects_a_bad_vpn(vpn: Any, error: str) -> None:
    cloud = Cloud()
    async with served(cloud, Connectivity(cloud)) as client:
        body = {"uuid": "u", "api_key": "k", "vpn": vpn}
        resp = await client.post("/admin/devices", json=body)
        assert resp.status == 400
        assert error in (await resp.json())["error"]
        assert cloud.devices == {}


async def test_registration_with_a_wireguard_key() -> None:
    cloud = Cloud()
    async with served(cloud, Connectivity(cloud, wg_interface="wgc01")) as client:
        vpn = {"kind": "wireguard", "public_key": "PUB=", "keepalive_s": 1}
        resp = await client.post("/admin/devices", json={"uuid": "u", "api_key": "k", "vpn": vpn})
        assert resp.status == 201
        assert cloud.devices["u"].vpn == Vpn("wireguard", public_key="PUB=", keepalive_s=1)
        out = (await (await client.get("/admin/devices/u")).json())["connectivity"]
        assert out["status"] == "Inactive"
        assert out["cloudlink"]["enabled"] and not out["cloudlink"]["ok"]


def test_page_shows_the_release_running_and_the_one_waiting_with_why() -> None:
    cloud, conn = fleet()
    bitter = cloud.devices["0123456789abcdef"]
    bitter.apply_report(
        {
            "apps": {
                "app": {
                    "release_uuid": "r1aaaaaaaaaa",
                    "releases": {
                        "r2bbbbbbbbbb": {
                            "update_status": "downloaded",
                            "update_lock": None,
                            "update_reason": "waiting for the update window (next: Tue 02:00)",
                            "services": {},
                        }
                    },
                }
            }
        },
        T0,
    )
    html = render_devices([(d, conn.of(d)) for d in cloud.devices.values()], T0)
    cells = row(html, "0123456789abcdef")
    assert '<code data-running="app">r1aaaaa</code>' in cells
    assert (
        '<div data-waiting="app"><code title="r2bbbbbbbbbb">r2bbbbb</code> downloaded'
        '<small class="why">waiting for the update window (next: Tue 02:00)</small></div>'
    ) in cells
    quiet = row(html, "fedcba9876543210")
    assert "<td>—</td><td>—</td><td>" in quiet  # nothing reported: no release, none waiting
