"""A container's log as the engine keeps it, line by line with its exact time and stream.

`DockerEngine.log_lines` (the local API's follower) gives whole-second `since` and float times
and loses which stream a line came from; the cloud log channel needs nanosecond positions, so a
restart resumes exactly after the last line sent (no duplicate, no gap), and `isStdErr`. The
SDK's `logs()` drops the stream byte of the engine's multiplexed frames, so this reads the raw
response: an 8-byte header per frame (stream 1 stdout / 2 stderr, big-endian length), then
the payload; a TTY container's log is not multiplexed (all stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.engine.docker import (
    SUPERVISED_FILTER,
    DockerEngine,
    _container_state,
    _follow,
    _translated,
)
from agent.model import ContainerState

_HEADER = struct.Struct(">BxxxL")


@dataclass(frozen=True, slots=True)
class LogFrame:
    ns: int  # engine time of the line, nanoseconds since the epoch
    stderr: bool
    text: str


def parse_stamp(stamp: bytes) -> int | None:
    """`2024-05-01T10:00:00.123456789Z` (RFC 3339 with nanoseconds) → ns since the epoch."""
    try:
        text = stamp.decode("ascii").rstrip("Z")
        head, _, frac = text.partition(".")
        whole = int(datetime.fromisoformat(head + "+00:00").timestamp())
    except (UnicodeDecodeError, ValueError):
        return None
    digits = (frac + "000000000")[:9]
    return whole * 1_000_000_000 + (int(digits) if digits.isdigit() else 0)


def since_param(ns: int) -> str:
    """The engine's `since` as `seconds.nanoseconds` (it keeps lines at or after it)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def split_frames(chunks: Iterator[tuple[bool, bytes]]) -> Iterator[LogFrame]:
    """Payloads per stream → lines; a line split over two frames is joined again."""
    pending: dict[bool, bytes] = {False: b"", True: b""}
    for stderr, data in chunks:
        buf = pending[stderr] + data
        *complete, pending[stderr] = buf.split(b"\n")
        for raw in complete:
            frame = _frame(raw, stderr)
            if frame is not None:
                yield frame
    for stderr, rest in pending.items():
        if rest:
            frame = _frame(rest, stderr)
            if frame is not None:
                yield frame


def _frame(raw: bytes, stderr: bool) -> LogFrame | None:
    stamp, _, message = raw.partition(b" ")
    ns = parse_stamp(stamp)
    if ns is None:
        return None
    return LogFrame(ns, stderr, message.decode(errors="replace").rstrip("\r"))


class _Stream:
    """The open response; `close` (called on the event loop when the consumer leaves) only
    shuts the socket down, which never blocks: the reader thread then ends and closes it."""

    def __init__(self, response: Any, sock: Any) -> None:
        self.response = response
        self._sock = sock

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


def _payloads(stream: _Stream, tty: bool) -> Iterator[tuple[bool, bytes]]:
    raw = stream.response.raw
    try:
        if tty:
            while chunk := raw.read1(65536):
                yield False, chunk
            return
        while True:
            header = raw.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            kind, length = _HEADER.unpack(header)
            if not length:
                continue
            data = raw.read(length)
            if not data:
                return
            yield kind == 2, data
    finally:
        with contextlib.suppress(Exception):
            stream.response.close()  # in the reader thread


async def log_frames(
    engine: DockerEngine, container_id: str, since_ns: int | None, follow: bool, tty: bool
) -> AsyncIterator[LogFrame]:
    """The container's log from `since_ns` (None: from its start), in a thread of its own;
    with `follow`, until the container stops or the consumer closes the iterator. Raises
    EngineError when the stream can't be opened."""

    def open_stream() -> _Stream:
        api = engine.api
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": 1 if follow else 0,
            "tail": "all",
        }
        if since_ns:
            params["since"] = since_param(since_ns)
        # the SDK's private request helpers: its public logs() drops the stream byte
        response = api._get(
            api._url("/containers/{0}/logs", container_id), params=params, stream=True
        )
        with _translated("container logs"):
            api._raise_for_status(response)
        sock = api._get_raw_response_socket(response)
        api._disable_socket_timeout(sock)
        return _Stream(response, sock)

    async for frame in _follow(
        f"cloudlogs-{container_id[:12]}",
        "container logs",
        open_stream,
        lambda stream: split_frames(_payloads(stream, tty)),
    ):
        yield frame


async def supervised_containers(engine: DockerEngine) -> list[ContainerState]:
    """The supervised containers, from one list call (no inspects)."""

    def read() -> list[ContainerState]:
        with _translated("list containers"):
            raw = engine.api.containers(all=True, filters=SUPERVISED_FILTER)
        return [c for c in (_container_state(r) for r in raw) if c is not None]

    return await asyncio.to_thread(read)


async def is_tty(engine: DockerEngine, container_id: str) -> bool:
    def read() -> bool:
        with _translated("inspect container"):
            info = engine.api.inspect_container(container_id)
        return bool((info.get("Config") or {}).get("Tty"))

    return await asyncio.to_thread(read)


async def container_starts(engine: DockerEngine) -> AsyncIterator[str]:
    """Ids of supervised containers as they start; first "" once the stream is open. Ends
    when the stream breaks (the engine restarted): the caller reconnects."""
    filters = {**SUPERVISED_FILTER, "type": "container", "event": "start"}

    def open_stream() -> Any:
        return engine.api.events(decode=True, filters=filters)

    def ids(stream: Any) -> Iterator[str]:
        yield ""
        for event in stream:
            yield str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")

    async for cid in _follow("cloudlogs-events", "engine events", open_stream, ids):
        yield cid
