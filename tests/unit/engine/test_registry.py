"""download_size: a manifest is read whole however the registry chunks it, and bounded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.engine import registry

PAD = web.AppKey("pad", int)
LAYERS: list[dict[str, Any]] = [
    {"digest": f"sha256:{i:064x}", "size": 1000 + i} for i in range(400)
]  # ~40 kB


async def _chunked(request: web.Request, body: bytes) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for start in range(0, len(body), 512):
        await resp.write(body[start : start + 512])
        await asyncio.sleep(0.0005)
    await resp.write_eof()
    return resp


async def _manifest(request: web.Request) -> web.StreamResponse:
    padding = "p" * request.app[PAD]
    body = json.dumps({"schemaVersion": 2, "layers": LAYERS, "annotations": {"x": padding}})
    return await _chunked(request, body.encode())


async def _size(pad: int) -> int | None:
    async def main() -> int | None:
        app = web.Application()
        app[PAD] = pad
        app.router.add_get("/v2/app/main/manifests/v1", _manifest)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            return await registry.download_size(f"127.0.0.1:{server.port}/app/main:v1")
        finally:
            await server.close()

    return await main()


async def test_a_manifest_in_small_pieces_is_read_whole():
    assert (await _size(0)) == sum(layer["size"] for layer in LAYERS)


async def test_a_manifest_past_the_cap_answers_unknown(monkeypatch):
    monkeypatch.setattr(registry, "MAX_MANIFEST_BYTES", 50_000)
    assert (await _size(20_000)) is None
