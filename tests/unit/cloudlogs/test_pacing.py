"""The flush grid: the loop-read log stream delivers a burst in one batch per tick, reads what
the socket file had buffered, ends at EOF; `logFlushMs` is read from config.json."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from agent.cloudlogs.channel import LogSettings
from agent.cloudlogs.wire import FLUSH_S, MIN_FLUSH_S
from agent.engine.logloop import loop_frames, plain_socket, read_split
from agent.engine.logwire import LogFrame, next_tick


def test_ticks_are_on_one_grid_strictly_after_now():
    assert next_tick(10.0, 0.5) == 10.5
    assert next_tick(10.01, 0.5) == 10.5
    assert next_tick(10.49, 0.5) == 10.5
    assert next_tick(3.05, 0.1) > 3.05


def test_flush_interval_from_config_with_a_floor():
    assert LogSettings.of({}).flush_s == FLUSH_S
    assert LogSettings.of({"logFlushMs": 250}).flush_s == 0.25
    assert LogSettings.of({"logFlushMs": 10}).flush_s == FLUSH_S  # below the floor: default
    assert LogSettings.of({"logFlushMs": "fast"}).flush_s == FLUSH_S
    assert MIN_FLUSH_S <= FLUSH_S


class _Raw:
    def __init__(self, fp: Any) -> None:
        self._fp = type("HTTPResponse", (), {"fp": fp})()
        self.chunked = False


class _Response:
    def __init__(self, sock: socket.socket) -> None:
        self.raw = _Raw(sock.makefile("rb"))
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _frame(i: int, stderr: bool = False) -> bytes:
    line = f"2024-05-01T10:00:00.{i:09d}Z line {i}\n".encode()
    return struct.pack(">BxxxL", 2 if stderr else 1, len(line)) + line


async def test_loop_reader_batches_bursts_per_tick_and_ends_at_eof():
    ours, engine = socket.socketpair()
    engine.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + _frame(1))
    response = _Response(ours)
    fp = response.raw._fp.fp
    assert fp.readline() + fp.readline() == b"HTTP/1.1 200 OK\r\n\r\n"  # line 1 buffered
    assert plain_socket(response) is ours
    loop = asyncio.get_running_loop()
    pace = 0.2
    batches: list[list[LogFrame]] = []

    async def engine_side() -> None:
        await asyncio.sleep(next_tick(loop.time(), pace) - loop.time() + 0.02)
        for i in range(2, 12):  # one burst, line by line, within a tick
            engine.sendall(_frame(i, stderr=i == 5))
            await asyncio.sleep(0.005)
        await asyncio.sleep(pace * 2)
        engine.sendall(_frame(12))
        await asyncio.sleep(pace * 2)
        engine.close()

    writer = asyncio.create_task(engine_side())
    async for batch in loop_frames(response, ours, False, pace):
        batches.append(batch)
    await writer
    assert response.closed
    assert [[f.text for f in b] for b in batches] == [
        ["line 1"],
        [f"line {i}" for i in range(2, 12)],  # the burst: one batch, not ten
        ["line 12"],
    ]
    assert [f.stderr for f in batches[1]] == [i == 5 for i in range(2, 12)]


def test_a_busy_stream_is_read_more_often_on_nested_grids():
    assert [read_split(x) for x in (0, 0.5, 1.0)] == [1, 1, 1]  # calm: once a tick
    assert [read_split(x) for x in (1.01, 2, 2.5, 4, 5, 100)] == [2, 2, 4, 4, 8, 8]


async def test_the_loop_reader_keeps_up_with_more_than_the_socket_holds_a_tick():
    """The engine writes a chunk per line; a unix socket holds a few hundred such writes, so a
    read once a tick would deliver only that many a tick while the engine waits."""
    total, pace = 3000, 1.0

    ours, engine = socket.socketpair()
    response = _Response(ours)
    response.raw.chunked = True
    loop = asyncio.get_running_loop()

    def engine_side() -> None:  # blocking writes, one chunk a line, as the engine's
        for i in range(1, total + 1):
            frame = _frame(i)
            engine.sendall(b"%x\r\n%s\r\n" % (len(frame), frame))
        engine.sendall(b"0\r\n\r\n")

    writer = loop.run_in_executor(None, engine_side)
    got, t0 = 0, loop.time()
    async for batch in loop_frames(response, ours, False, pace):
        got += len(batch)
    elapsed = loop.time() - t0
    await writer
    engine.close()
    assert got == total
    # once a tick this took ≥ 10 ticks here (≈ 280 writes a read); finer reads: a few
    assert elapsed < 5 * pace, f"{elapsed:.1f} s for {total} lines"
