"""A container's log as the engine keeps it, line by line with its exact time and stream.

`DockerEngine.log_lines` (the local API's follower) gives whole-second `since` and float times
and loses which stream a line came from; the cloud log channel needs nanosecond positions, so a
restart resumes exactly after the last line sent (no duplicate, no gap), and `isStdErr`. The
SDK's `logs()` drops the stream byte of the multiplexed frames, so the response is read here.

Cost matters (a busy service logs all day). With `pace` (the cloud log channel) and a plain
socket, the event loop reads the stream itself on a grid of ticks (logloop.py): no thread, one
wake-up a tick for every follower and the sender. Otherwise (TLS or SSH engine connections,
or a caller without `pace`) a reader thread takes whatever the socket has in one call (`read1`
on the response's buffered socket file, de-chunked and demultiplexed in logwire.py, not one
urllib3 read per frame) and naps `READ_NAP_S` after each read, so a burst of lines (the engine
sends one HTTP chunk per line) is read at once; it wakes the event loop only when the consumer
is waiting, which then lets a burst gather for `COALESCE_S` before taking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from agent.engine.docker import (
    SUPERVISED_FILTER,
    DockerEngine,
    _container_state,
    _follow,
    _translated,
)
from agent.engine.logloop import loop_frames, plain_socket
from agent.engine.logwire import LogFrame, LogStream, since_param
from agent.errors import EngineError
from agent.model import ContainerState

COALESCE_S = 0.05  # the thread reader: let a burst gather before the loop takes it
READ_NAP_S = 0.01  # after a read, let the rest of a burst arrive: one read for many lines
MAX_PENDING = 5000  # lines read ahead of the consumer; past that the reader waits


class _Reader:
    """One container's log stream, read in its own thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tty: bool) -> None:
        self._loop = loop
        self._tty = tty
        self._lock = threading.Lock()
        self._frames: list[LogFrame] = []
        self._waiting = False
        self._done = False
        self._error: BaseException | None = None
        self._wake = asyncio.Event()
        self._drained = threading.Event()
        self.closed = threading.Event()
        self._sock: Any = None

    # --- reader thread ------------------------------------------------------------------------

    def run(self, open_response: Any) -> None:
        response = None
        try:
            with _translated("container logs"):
                response, self._sock = open_response()
            if self.closed.is_set():
                return
            self._read(response)
            self._finish(None)
        except BaseException as exc:  # handed to the consumer
            self._finish(exc)
        finally:
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()

    def _read(self, response: Any) -> None:
        # the buffered socket file under urllib3 and http.client: read1 returns what is
        # buffered, or what one recv gives, never waiting for more
        fp = response.raw._fp.fp
        stream = LogStream(bool(response.raw.chunked), self._tty)
        while not self.closed.is_set():
            data = fp.read1(65536)
            if not data:
                break
            out: list[LogFrame] = []
            stream.feed(data, out)
            if out:
                self._deliver(out)
            if stream.done:
                break
            time.sleep(READ_NAP_S)  # the engine sends a chunk per line: read them together
        self._deliver(stream.rest())

    def _deliver(self, frames: list[LogFrame]) -> None:
        if not frames:
            return
        while len(self._frames) > MAX_PENDING and not self.closed.is_set():
            self._drained.wait(0.5)  # the consumer lags: the engine keeps the rest
            self._drained.clear()
        with self._lock:
            self._frames.extend(frames)
            wake, self._waiting = self._waiting, False
        if wake:
            self._signal()

    def _finish(self, error: BaseException | None) -> None:
        with self._lock:
            self._done, self._error = True, error
            wake, self._waiting = self._waiting, False
        if wake:
            self._signal()

    def _signal(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- event loop ---------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[list[LogFrame]]:
        while True:
            with self._lock:
                got, self._frames = self._frames, []
                done, error = self._done, self._error
                if not got and not done:
                    self._waiting = True
                    self._wake.clear()
            if got:
                self._drained.set()
                yield got
                continue
            if done:
                if isinstance(error, EngineError):
                    raise error  # opening the stream failed (no such container, engine down)
                return  # the stream ended or broke off: the container stopped, or we closed it
            await self._wake.wait()
            await asyncio.sleep(COALESCE_S)  # let the rest of a burst arrive

    def close(self) -> None:
        """Called on the loop: shutting the socket down never blocks; the thread then ends."""
        self.closed.set()
        self._drained.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


def _given(opened: tuple[Any, Any]) -> Callable[[], tuple[Any, Any]]:
    return lambda: opened


async def log_frames(
    engine: DockerEngine,
    container_id: str,
    since_ns: int | None,
    follow: bool,
    tty: bool,
    pace: float | None = None,
) -> AsyncIterator[list[LogFrame]]:
    """The container's log from `since_ns` (None: from its start), in batches of lines; with
    `follow`, until the container stops or the consumer closes the iterator. Raises
    EngineError when the stream can't be opened. With `pace`, a followed stream over a plain
    socket is read by the loop on a grid of that period (logloop.py), else by a thread."""

    def open_response() -> tuple[Any, Any]:
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
        url = api._url("/containers/{0}/logs", container_id)
        response = api._get(url, params=params, stream=True)
        api._raise_for_status(response)
        sock = api._get_raw_response_socket(response)
        api._disable_socket_timeout(sock)
        return response, sock

    reader = _Reader(asyncio.get_running_loop(), tty)
    start: Callable[[], tuple[Any, Any]] = open_response
    if follow and pace is not None:
        with _translated("container logs"):
            opened = await asyncio.to_thread(open_response)
        sock = plain_socket(opened[0])
        if sock is not None:
            async for batch in loop_frames(opened[0], sock, tty, pace):
                yield batch
            return
        start = _given(opened)  # TLS or SSH: read in a thread, as without `pace`
    threading.Thread(
        target=reader.run, args=(start,), name=f"cloudlogs-{container_id[:12]}", daemon=True
    ).start()
    try:
        async for batch in reader.batches():
            yield batch
    finally:
        reader.close()


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
