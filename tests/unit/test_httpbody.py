"""read_whole: a body is read to its end however it arrives, and never past the cap."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.httpbody import BodyTooLarge, read_whole

BODY = os.urandom(300_000)


async def _pieces(request: web.Request) -> web.StreamResponse:
    """BODY in `chunk`-byte HTTP chunks (no Content-Length), a 1 ms pause after each of
    the first `pauses` of them."""
    size = int(request.query.get("chunk", "1000"))
    pauses = int(request.query.get("pauses", "1000"))
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for n, start in enumerate(range(0, len(BODY), size)):
        await resp.write(BODY[start : start + size])
        if n < pauses:
            await asyncio.sleep(0.001)
    await resp.write_eof()
    return resp


async def _announced(request: web.Request) -> web.StreamResponse:
    """BODY with its Content-Length, in pieces."""
    resp = web.StreamResponse()
    resp.content_length = len(BODY)
    await resp.prepare(request)
    for start in range(0, len(BODY), 4096):
        await resp.write(BODY[start : start + 4096])
        await asyncio.sleep(0.001)
    await resp.write_eof()
    return resp


async def _serve(test: Callable[[aiohttp.ClientSession, str], Awaitable[None]]) -> None:
    app = web.Application()
    app.router.add_get("/pieces", _pieces)
    app.router.add_get("/announced", _announced)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            await test(session, str(server.make_url("")))
    finally:
        await server.close()


async def test_a_body_in_many_small_pieces_is_read_whole():
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        # what the old one-call read returned: only the first piece(s) — the bug this guards
        async with session.get(base + "/pieces") as resp:
            first = await resp.content.read(len(BODY) + 1)
            assert 0 < len(first) < len(BODY)
        for path in ("/pieces", "/pieces?chunk=7&pauses=200", "/announced"):
            async with session.get(base + path) as resp:
                assert await read_whole(resp, len(BODY)) == BODY, path

    await _serve(test)


async def test_a_body_past_the_cap_fails_clearly():
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(base + "/pieces") as resp:
            with pytest.raises(BodyTooLarge, match=f"longer than the {len(BODY) - 1} bytes"):
                await read_whole(resp, len(BODY) - 1)
        # announced by Content-Length: refused before a byte is read
        async with session.get(base + "/announced") as resp:
            with pytest.raises(BodyTooLarge, match=f"announces {len(BODY)} bytes") as caught:
                await read_whole(resp, 1000)
        assert caught.value.read == 0
        # the connection is still usable for the next request
        async with session.get(base + "/announced") as resp:
            assert await read_whole(resp, len(BODY)) == BODY

    await _serve(test)
