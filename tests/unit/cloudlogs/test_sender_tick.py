"""The sender's flush tick: everything waiting goes out on one tick, not one batch a tick."""

from __future__ import annotations

import asyncio
import contextlib
import zlib

import pytest

from agent.cloudlogs import sender as sender_module
from agent.cloudlogs.buffer import LogBuffer
from agent.cloudlogs.sender import MAX_BATCH_BYTES, TICK_MAX_BYTES, Sender
from agent.cloudlogs.wire import Entry, GzipStream, system_entry


async def test_a_backlog_of_several_batches_goes_out_on_one_tick_in_order(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(sender_module, "REQUEST_MAX_S", 1.0)
    flush_s = 0.2
    lines = [system_entry(f"{i:06d} " + "x" * 240, i) for i in range(3200)]
    size = sum(len(e.line) for e in lines)
    assert 2 * MAX_BATCH_BYTES < size < TICK_MAX_BYTES

    loop = asyncio.get_running_loop()
    buffer = LogBuffer(10 * size, 0, None)
    for e in lines:
        buffer.put(e)
    sender = Sender("http://cloud.invalid", "uuid", "key", buffer, lambda _b: None, flush_s)
    inflight: list[Entry] = []
    times: list[float] = []
    body = b""
    async for chunk in sender._body(GzipStream(), inflight, []):  # until REQUEST_MAX_S
        times.append(loop.time())
        body += chunk
    *flushes, _end = times
    assert len(flushes) >= 3  # one gzip flush a batch
    assert max(flushes) - min(flushes) < flush_s / 2, "the batches waited for later ticks"
    assert inflight == lines
    assert zlib.decompressobj(31).decompress(body) == b"".join(e.line for e in lines)


async def test_a_request_holds_no_more_unacknowledged_lines_than_the_memory_bound():
    lines = [system_entry(f"{i:06d} " + "y" * 200, i) for i in range(200)]
    bound = 8192

    buffer = LogBuffer(100 * bound, 0, None)
    for e in lines:
        buffer.put(e)
    buffer.mem_bytes = bound  # five times the bound waits
    sender = Sender("http://cloud.invalid", "uuid", "key", buffer, lambda _b: None, 0.1)
    inflight: list[Entry] = []
    body = b"".join([chunk async for chunk in sender._body(GzipStream(), inflight, [])])
    inflight, body, left = inflight, body, len(buffer)
    held = sum(len(e.line) for e in inflight)
    assert bound <= held < bound + len(lines[0].line)  # the request ended at the bound
    assert inflight == lines[: len(inflight)] and left == len(lines) - len(inflight)
    assert zlib.decompress(body, 31) == b"".join(e.line for e in inflight)  # a whole member


async def test_a_request_answered_while_its_body_waited_takes_no_lines_and_keeps_their_order():
    """A refused request's body generator lives on until its next step; by then the lines it
    sent are first in line again (and may be another request's). It must take nothing, or
    put back what it took where it was: the lines stay in their order (a line put back behind
    newer ones reached the cloud late, and the CI's 'cut loses nothing' test missed it)."""
    lines = [system_entry(f"line {i}", i) for i in range(6)]

    async def main() -> list[Entry]:
        buffer = LogBuffer(1 << 20, 0, None)
        sender = Sender("http://cloud.invalid", "uuid", "key", buffer, lambda _b: None, 0.05)
        for e in lines[:3]:
            buffer.put(e)
        inflight: list[Entry] = []
        ended: list[bool] = []
        body = sender._body(GzipStream(), inflight, ended)
        await anext(body)  # lines 0-2 sent
        assert inflight == lines[:3]
        ended.append(True)  # refused: its lines first in line again, as _request does
        buffer.requeue(inflight)
        for e in lines[3:]:
            buffer.put(e)
        # room for half a line more in flight: a take() now gets one line (the old code put
        # it back behind the two requeued after it)
        buffer.mem_bytes = sum(len(e.line) for e in lines[:3]) + len(lines[0].line) // 2
        with contextlib.suppress(StopAsyncIteration):
            await anext(body)  # the stale body wakes on the new lines
        return await buffer.take(1 << 20)

    assert (await main()) == lines
