"""Read an aiohttp client response's body to its end, bounded.

`resp.content.read(n)` answers with what is buffered *now*, not with `n` bytes: a body that
arrives in pieces (TLS records, a slow link, chunked transfer encoding) would be cut at the
first piece. Every body the agent reads from another server goes through `read_whole`.
"""

from __future__ import annotations

import aiohttp


class BodyTooLarge(Exception):
    """The body is (or announces to be) longer than the reader accepts."""

    def __init__(self, limit: int, size: int, read: int) -> None:
        if read:
            what = f"is longer than the {limit} bytes accepted (stopped after {read})"
        else:
            what = f"announces {size} bytes, more than the {limit} accepted"
        super().__init__(f"answer {what}")
        self.limit = limit
        self.read = read  # bytes read before giving up (0 when Content-Length told)


async def read_whole(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """All of `resp`'s body, however it is chunked; `BodyTooLarge` once it passes `limit`
    bytes (checked against Content-Length first, so an announced oversize reads nothing).
    The limit counts decoded bytes: a compressed body can't expand past it."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, declared, read=0)
    body = bytearray()
    async for piece in resp.content.iter_any():
        body += piece
        if len(body) > limit:
            raise BodyTooLarge(limit, len(body), read=len(body))
    return bytes(body)
