"""The buffer's segments on disk: blocking file I/O, called in worker threads only.

One record a line: `key TAB ts_ms TAB container TAB ns TAB <the NDJSON line>` (JSON escapes
tabs and newlines inside strings, and keys are service names with tabs replaced)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from agent.cloudlogs.wire import Entry

PREFIX = "segment-"


def _record(e: Entry) -> bytes:
    key = e.key.replace("\t", " ").replace("\n", " ")
    return f"{key}\t{e.ts_ms}\t{e.container}\t{e.ns}\t".encode() + e.line


def write_segment(path: Path, entries: Iterable[Entry]) -> int:
    """Write `entries` to a new file at `path`; its size in bytes."""
    data = b"".join(_record(e) for e in entries)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return len(data)


def read_segment(path: Path) -> list[Entry]:
    """The entries of a segment (left in place: the caller removes it once they are taken,
    so a read cut short by a cancellation loses nothing); a torn last record is skipped."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    entries: list[Entry] = []
    for raw in data.splitlines(keepends=True):
        parts = raw.split(b"\t", 4)
        if len(parts) != 5 or not parts[4].endswith(b"\n"):
            continue
        try:
            entries.append(
                Entry(parts[4], parts[0].decode(), int(parts[1]), parts[2].decode(), int(parts[3]))
            )
        except ValueError:
            continue
    return entries


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def remove_all(paths: Iterable[Path]) -> None:
    for path in paths:
        remove(path)


def clear(directory: Path) -> None:
    """Make the spill dir and empty it: the lines of an earlier run's segments are read again
    from the engine (their positions were never advanced), so keeping them would repeat them."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(PREFIX + "*"):
        remove(old)
