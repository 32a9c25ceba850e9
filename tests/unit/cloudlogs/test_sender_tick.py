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
from agent.engine.logloop import sleep_until
from agent.engine.logwire import next_tick


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


async def test_a_new_requests_waiting_lines_go_out_at_once_not_a_tick_later(
    monkeypatch: pytest.MonkeyPatch,
):
    """A request opened after a tick (its set-up takes a while on a busy device) sends the
    lines read on that tick at once; they used to wait for the next tick, a second more."""
    monkeypatch.setattr(sender_module, "REQUEST_MAX_S", 0.5)
    loop = asyncio.get_running_loop()
    flush_s = 2.0
    await sleep_until(next_tick(loop.time(), flush_s) + 0.3)  # well past a tick, far from one
    buffer = LogBuffer(1 << 20, 0, None)
    buffer.put(system_entry("read on the last tick", 1))
    sender = Sender("http://cloud.invalid", "uuid", "key", buffer, lambda _b: None, flush_s)
    t0 = loop.time()
    body = sender._body(GzipStream(), [], [])
    await anext(body)
    assert loop.time() - t0 < 0.2
    async for _ in body:  # to the request's end
        pass


async def test_the_deadline_ends_a_waiting_request_and_starts_no_empty_one():
    buffer = LogBuffer(1 << 20, 0, None)
    buffer.put(system_entry("one line", 1))
    sender = Sender("http://cloud.invalid", "uuid", "key", buffer, lambda _b: None, 0.1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sender_module, "REQUEST_MAX_S", 0.4)
        chunks = [chunk async for chunk in sender._body(GzipStream(), [], [])]
    assert len(chunks) == 2 and 0.35 < loop.time() - t0 < 1.0  # the line, then the end
    assert buffer.ready.is_set() and not buffer.pending  # run() opens no request for this
