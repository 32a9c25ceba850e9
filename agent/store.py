"""Durable state: one JSON document per key in the data dir, written atomically.

Every write goes to a temp file in the same directory, is fsynced, renamed over the old file
and the directory fsynced — so after a power cut a key holds either the old or the new value,
never a torn one. A failed write (full disk) raises `StoreError` and leaves the old value.

A file that can't be used — torn, not JSON, or JSON of the wrong shape for its key (the shapes
are in agent/shapes.py) — is set aside as `<key>.corrupt` for a human, logged with what is
wrong, and read as the caller's default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from agent import shapes
from agent.errors import StoreError

log = structlog.get_logger("agent.store")
# called with the key between a write's fsynced temp file and its rename over the old value
# (a seam for tests: testbed/testhooks.py hooks its crash points here; empty on a device)
BEFORE_REPLACE: list[Callable[[str], None]] = []

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data dir {root}: {exc.strerror}") from exc
        self._cleanup_temps()
        self._locks: dict[str, asyncio.Lock] = {}
        self._paths: dict[str, Path] = {}

    def _path(self, key: str) -> Path:
        """Made once per key and kept: pathlib interns each part of a new Path, and a part that
        dies is dropped from the interpreter's interned-strings table again, so a Path per
        write re-inserted "<key>.json" every time. That churn made the table resize (to twice
        its size, +0.9 MB RSS for good) after ≈ 25,000 writes (issue 10's soak)."""
        path = self._paths.get(key)
        if path is None:
            if not _KEY_RE.match(key):
                raise ValueError(f"bad store key {key!r}")
            path = self._paths[key] = self.root / f"{key}.json"
        return path

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under `key`; `default` when there is none or it can't be used."""
        path = self._path(key)
        try:
            with path.open("rb") as fh:
                value = json.load(fh)
        except FileNotFoundError:
            return default
        except (OSError, ValueError, RecursionError) as exc:
            # a corrupt file can only come from outside interference: keep it for a human
            log.error("store_unreadable", key=key, path=str(path), error=str(exc))
            self._set_aside(path)
            return default
        wrong = shapes.problem(key, value)
        if wrong is not None:
            log.error("store_wrong_shape", key=key, path=str(path), error=wrong)
            self._set_aside(path)
            return default
        return value

    @staticmethod
    def _set_aside(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(".corrupt"))

    def put(self, key: str, value: Any) -> None:
        """Write `value` durably, in this thread (two fsyncs: from the event loop, use
        `put_async` or a `LatestWriter`)."""
        self._write(key, _encode(value))

    async def put_async(self, key: str, value: Any) -> None:
        """`put` in a worker thread, so the event loop never waits on the disk. `value` is
        encoded at once (later changes to it are not written); writes of one key happen in
        the order of the calls. Raises StoreError like `put`."""
        data = _encode(value)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # FIFO: the last call's value is the one left on disk
            await asyncio.to_thread(self.put, key, _Encoded(data))

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.root)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            for hook in BEFORE_REPLACE:
                hook(key)
            os.replace(tmp, path)
            self._fsync_dir()
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise StoreError(f"cannot write {key} to {self.root}: {exc.strerror}") from exc

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _fsync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _cleanup_temps(self) -> None:
        for tmp in self.root.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _encode(value: Any) -> bytes:
    if isinstance(value, _Encoded):
        return bytes(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class LatestWriter:
    """Keeps one key on disk up to date with the latest value, off the event loop: `write`
    returns at once and the value is written by a background task through `put_async`;
    values written while a write is in flight are coalesced (only the latest is written
    next). `delete` removes the key in the same order. Without a running loop (start-up,
    tests) both act in place. A failed write goes to `on_error`. `flush` waits until the latest
    value is on disk (shutdown)."""

    def __init__(
        self,
        store: Store,
        key: str,
        on_error: Callable[[StoreError], None],
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_written`: called after each value that reached the disk."""
        self._store = store
        self._key = key
        self._on_error = on_error
        self._on_written = on_written
        self._pending: list[Any] = []  # [value] when one waits to be written
        self._task: asyncio.Task[None] | None = None

    def write(self, value: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                self._store.put(self._key, value)
            except StoreError as exc:
                self._on_error(exc)
            else:
                self._on_written()
            return
        self._queue(loop, _encode(value))

    def delete(self) -> None:
        """Remove the key (after any write still waiting: the last call wins)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._store.delete(self._key)
            return
        self._queue(loop, _DELETE)

    def _queue(self, loop: asyncio.AbstractEventLoop, item: bytes | object) -> None:
        self._pending[:] = [item]
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name=f"store-{self._key}")

    async def _drain(self) -> None:
        while self._pending:
            item = self._pending.pop()
            if item is _DELETE:
                await asyncio.to_thread(self._store.delete, self._key)
                continue
            try:
                await self._store.put_async(self._key, _Encoded(item))
            except StoreError as exc:
                self._on_error(exc)
            else:
                self._on_written()

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


_DELETE = object()  # queued by LatestWriter.delete


class _Encoded(bytes):
    """A value `LatestWriter` encoded already (snapshot taken at `write`)."""


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write only part (a disk filling up returns a short count before ENOSPC):
    loop until all is written, so a short write can never be renamed over the old value."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
