"""devcloud trickle mode: answers in small pieces with pauses, switched per device or cloud-wide."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from devcloud.__main__ import parse_args
from devcloud.server import make_app
from devcloud.state import Cloud, Trickle

UUID = "a" * 32
OTHER = "b" * 32
KEY = "key"
TARGET = {"name": "t", "config": {}, "apps": {}, "pad": "y" * 20_000}


async def _fetch(session: aiohttp.ClientSession, base: str, uuid: str) -> tuple[Any, list[int]]:
    """The state document and the sizes of the pieces it arrived in."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with session.get(f"{base}/device/v3/{uuid}/state", headers=headers) as resp:
        assert resp.status == 200
        pieces = [len(p) async for p, _ in resp.content.iter_chunks()]
        chunked = resp.headers.get("Transfer-Encoding") == "chunked"
        return chunked, pieces


async def _run(test: Any) -> None:
    cloud = Cloud()
    for uuid in (UUID, OTHER):
        cloud.register(uuid, KEY)
        cloud.set_target(uuid, TARGET)
    server = TestServer(make_app(cloud), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            await test(session, str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()


async def test_trickle_per_device_and_cloud_wide():
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        chunked, pieces = await _fetch(session, base, UUID)
        assert not chunked and sum(pieces) > 20_000

        # per device: 1000-byte HTTP chunks, 2 ms after each
        async with session.put(
            f"{base}/admin/devices/{UUID}/trickle", json={"chunk_bytes": 1000, "pause_ms": 2}
        ) as resp:
            assert await resp.json() == {
                "uuid": UUID,
                "trickle": {"chunk_bytes": 1000, "pause_ms": 2.0},
            }
        started = time.monotonic()
        chunked, pieces = await _fetch(session, base, UUID)
        took = time.monotonic() - started
        assert chunked and max(pieces) <= 1000 and len(pieces) > 20
        assert took >= 20 * 0.002
        assert not (await _fetch(session, base, OTHER))[0]  # the other device: unchanged

        # cloud-wide: every device without its own setting
        async with session.put(f"{base}/admin/trickle", json={"chunk_bytes": 300}) as resp:
            assert (await resp.json())["trickle"] == {"chunk_bytes": 300, "pause_ms": 0.0}
        chunked, pieces = await _fetch(session, base, OTHER)
        assert chunked and max(pieces) <= 300
        assert max((await _fetch(session, base, UUID))[1]) <= 1000  # its own wins

        # null turns it off
        for path in (f"/admin/devices/{UUID}/trickle", "/admin/trickle"):
            async with session.put(base + path, data=b"null") as resp:
                assert resp.status == 200
        async with session.get(f"{base}/admin/devices/{UUID}") as resp:
            assert (await resp.json())["trickle"] is None
        assert not (await _fetch(session, base, UUID))[0]

    await _run(test)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"chunk_bytes": 0},
        {"chunk_bytes": "1"},
        {"chunk_bytes": True},
        {"chunk_bytes": 10, "pause_ms": -1},
        {"chunk_bytes": 10, "pause_ms": 1e9},
    ],
)
async def test_bad_trickle_settings_are_refused(body):
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        async with session.put(f"{base}/admin/devices/{UUID}/trickle", json=body) as resp:
            assert resp.status == 400
            assert "trickle" in (await resp.json())["error"]

    await _run(test)


def test_trickle_flag():
    assert parse_args(["--trickle", "512:3.5"]).trickle == Trickle(512, 3.5)
    assert parse_args(["--trickle", "64"]).trickle == Trickle(64, 0.0)
    with pytest.raises(SystemExit):
        parse_args(["--trickle", "0:1"])
