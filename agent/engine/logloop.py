"""A container's log stream read by the event loop itself, on a shared clock.

The thread reader (logframes.py) costs a thread wake-up per read and a loop wake-up per hand-
over, a few of each for every burst a service prints. When the engine's connection is a plain
socket (unix:// or tcp:// without TLS), the loop reads it instead, non-blocking, and only on
the ticks of a grid every `pace` seconds (logwire.next_tick): while lines keep coming, each tick
reads what arrived since the last one (no wake-up per line or per burst); when a tick finds
nothing, the socket is watched again and its next data only arms the next tick. Every follower
and the cloud sender (which flushes on the same grid) wake together: one wake-up a tick for all
of them while anything logs, none when nothing does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from agent.engine.logwire import LogFrame, LogStream, next_tick

RECV_BYTES = 256 * 1024
TICK_BYTES = 512 * 1024  # read at most this much a tick: a backlog never holds the loop long
# A busy stream is read more often than every `pace`: the engine writes a chunk per line and a
# unix socket holds only a few hundred small writes (its send buffer counts each write's
# overhead: ≈ 280 of 130 bytes here), so one read a tick alone would cap a service at that
# many lines a tick while the engine waits. The next read comes after pace / 2^k (k ≤ 3, on
# grids that nest in the tick grid) with k the least that keeps a read, at the rate seen
# since the last one, within READ_CHUNKS chunks and READ_BYTES bytes.
READ_CHUNKS = 200
READ_BYTES = 32 * 1024
MAX_SPLIT = 8


def plain_socket(response: Any) -> socket.socket | None:
    """The response's socket when the loop can read it (not TLS, not an SSH channel)."""
    raw = getattr(getattr(getattr(response.raw, "_fp", None), "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if type(sock) is socket.socket else None


def read_split(load: float) -> int:
    """Reads a tick for `load` (reads needed a tick): the least power of two ≥ it, ≤ 8."""
    split = 1
    while split < load and split < MAX_SPLIT:
        split *= 2
    return split


async def sleep_until(when: float) -> None:
    """Sleep until `when` on the loop's clock, exactly (timers due at the same time run in the
    same wake-up)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(when, _wake, fut)
    try:
        await fut
    finally:
        handle.cancel()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def loop_frames(
    response: Any, sock: socket.socket, tty: bool, pace: float
) -> AsyncIterator[list[LogFrame]]:
    """Batches of lines from an open logs response, read on the loop at `pace` ticks."""
    loop = asyncio.get_running_loop()
    fp = response.raw._fp.fp
    chunked = bool(response.raw.chunked)
    stream = LogStream(chunked, tty)
    sock.setblocking(False)
    watching = False
    try:
        # what the header read left in the socket file's buffer (non-blocking: never waits)
        data = fp.read1(RECV_BYTES)
        last = loop.time() - pace
        while True:
            eof = False
            now = loop.time()
            share, last = max(now - last, pace / MAX_SPLIT) / pace, now  # since the last read
            while len(data) < TICK_BYTES:  # what the socket has now (the rest: next tick)
                try:
                    got = sock.recv(RECV_BYTES)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    eof = True
                    break
                if not got:
                    eof = True
                    break
                data += got
                if len(got) < RECV_BYTES:
                    break  # all the socket had: no second recv (and its exception) a tick
            load = len(data) / READ_BYTES  # reads needed a tick at this rate (≥ 1: busy)
            if data:
                before = stream.count
                out: list[LogFrame] = []
                stream.feed(data, out)  # de-chunk, demux, split: one pass in the usual case
                if chunked:
                    load = max(load, (stream.count - before) / READ_CHUNKS)
                    eof = eof or stream.done
                if out:
                    yield out
            if eof:
                rest = stream.rest()
                if rest:
                    yield rest
                return
            if not data:  # quiet: the socket's next data arms the next tick
                readable: asyncio.Future[None] = loop.create_future()
                loop.add_reader(sock, _wake, readable)
                watching = True
                try:
                    await readable
                finally:
                    loop.remove_reader(sock)
                    watching = False
            data = b""
            await sleep_until(next_tick(loop.time(), pace / read_split(load / share)))
    finally:
        if watching:
            loop.remove_reader(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()
