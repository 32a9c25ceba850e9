"""Durable state: one JSON document per key in the data dir, written atomically.

Every write goes to a temp file in the same directory, is fsynced, renamed over the old file
and the directory fsynced — so after a power cut a key holds either the old or the new value,
never a torn one. A failed write (full disk) raises `StoreError` and leaves the old value.

A file that can't be used — torn, not JSON, or JSON of the wrong shape for its key (the shapes
are in agent/shapes.py) — is set aside as `<key>.corrupt` for a human, logged with what is
wrong, and read as the caller's default.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import structlog

from agent import shapes, testhooks
from agent.errors import StoreError

log = structlog.get_logger("agent.store")

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data dir {root}: {exc.strerror}") from exc
        self._cleanup_temps()

    def _path(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"bad store key {key!r}")
        return self.root / f"{key}.json"

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
        path = self._path(key)
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.root)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if testhooks.enabled():  # test only: a crash point (agent/testhooks.py)
                testhooks.reached("state_write")
                testhooks.reached(f"state_write.{key}")
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


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write only part (a disk filling up returns a short count before ENOSPC):
    loop until all is written, so a short write can never be renamed over the old value."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
