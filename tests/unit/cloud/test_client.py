"""CloudClient against the devcloud: answers are read whole however the cloud chunks them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from agent.cloud import client as client_mod
from agent.cloud.client import CloudClient
from agent.errors import CloudError
from devcloud.server import make_app
from devcloud.state import Cloud, Trickle

UUID = "d" * 32
KEY = "k" * 32
# ~200 kB of environment: many pieces at 512 bytes each
TARGET = {
    "name": "big",
    "config": {},
    "apps": {},
    "padding": {f"VAR_{i}": "x" * 1000 for i in range(200)},
}


async def _with_cloud(
    trickle: Trickle | None, test: Callable[[CloudClient, Cloud], Awaitable[None]]
) -> None:
    cloud = Cloud(trickle=trickle)
    cloud.register(UUID, KEY)
    cloud.set_target(UUID, TARGET)
    server = TestServer(make_app(cloud), host="127.0.0.1")
    await server.start_server()
    client = CloudClient(str(server.make_url("")), UUID, KEY)
    try:
        await test(client, cloud)
    finally:
        await client.close()
        await server.close()


async def test_a_target_sent_in_small_pieces_is_read_whole():
    async def test(client: CloudClient, cloud: Cloud) -> None:
        fetched = await client.fetch_target(None)
        assert fetched.body == {UUID: TARGET}
        assert fetched.nbytes == client.bytes_received > 200_000
        again = await client.fetch_target(fetched.etag)
        assert not again.changed
        # device tags (the OData answers) go through the same reader
        assert await client.device_tags() == []

    await _with_cloud(Trickle(chunk_bytes=512, pause_ms=0.2), test)


async def test_a_target_past_the_size_cap_is_a_clear_cloud_error(monkeypatch):
    monkeypatch.setattr(client_mod, "MAX_TARGET_BYTES", 100_000)

    async def test(client: CloudClient, cloud: Cloud) -> None:
        with pytest.raises(CloudError, match="fetch target state: answer is longer than the "):
            await client.fetch_target(None)
        # without the trickle the length is announced: refused before reading
        cloud.trickle = None
        with pytest.raises(CloudError, match=r"answer announces \d+ bytes, more than the 100000"):
            await client.fetch_target(None)

    await _with_cloud(Trickle(chunk_bytes=4096), test)


async def test_cloud_requests_name_the_compatible_supervisor_and_this_agent():
    """balena's cloud knows supervisors by `Supervisor/<version>`; ours follows it."""
    from aiohttp import web

    from agent import SUPERVISOR_COMPAT_VERSION, __version__

    seen: list[str] = []

    async def state(request: web.Request) -> web.Response:
        seen.append(request.headers.get("User-Agent", ""))
        return web.json_response({UUID: TARGET})

    app = web.Application()
    app.router.add_get(f"/device/v3/{UUID}/state", state)
    app.router.add_patch("/device/v3/state", state)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = CloudClient(str(server.make_url("")), UUID, KEY)
    try:
        await client.fetch_target(None)
        await client.patch_state({UUID: {}})
    finally:
        await client.close()
        await server.close()
    expected = f"Supervisor/{SUPERVISOR_COMPAT_VERSION} device-agent/{__version__}"
    assert seen == [expected, expected]
