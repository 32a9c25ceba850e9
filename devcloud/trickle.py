"""Answer bodies whole, or — when a trickle is set — in small pieces with pauses between them.

On loopback a body of a few MB arrives in one piece; real links (TLS records, a slow uplink,
proxies) hand it over in pieces. A client that reads "what is there" instead of "to the end"
only fails in the second case, so the devcloud can produce it on demand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from devcloud.state import Trickle


async def send_body(
    request: web.Request,
    trickle: Trickle | None,
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """`body` as the answer: one piece without a trickle, else `trickle.chunk_bytes` per
    HTTP chunk with `trickle.pause_ms` after each (chunked transfer encoding, no length)."""
    if trickle is None:
        return web.Response(body=body, status=status, content_type=content_type, headers=headers)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = content_type
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    view = memoryview(body)
    for start in range(0, len(view), trickle.chunk_bytes):
        await resp.write(bytes(view[start : start + trickle.chunk_bytes]))
        if trickle.pause_ms:
            await asyncio.sleep(trickle.pause_ms / 1000)
    await resp.write_eof()
    return resp


async def send_json(
    request: web.Request, trickle: Trickle | None, data: Any, *, status: int = 200
) -> web.StreamResponse:
    return await send_body(request, trickle, json.dumps(data).encode(), status=status)
