"""Each container's log position (the engine time, in ns, of its last line written to the
cloud), kept in a small memory-mapped file in the data dir.

It changes at every flush (up to 10 a second while services log): a store write there would
cost two fsyncs each time (flash wear, and most of the CPU the channel spent). Stores into a
shared mapping are plain memory writes: never a blocking call on the event loop, and the pages
belong to the kernel's page cache, so they outlive the agent being SIGKILLed; the kernel
writes them back on its own schedule. A power cut may leave an older position (lines sent
again), never a newer one (nothing lost).

Layout: a 16-byte header (`DAPOS1\\n\\0`, then the ns since when cloud logging runs here, LE),
then `SLOTS` records of a 64-byte container id (ASCII, NUL-padded) and an 8-byte LE ns.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

MAGIC = b"DAPOS1\n\0"
SLOTS = 512
_HEAD = struct.Struct("<8sq")
_SLOT = struct.Struct("<64sq")
SIZE = _HEAD.size + SLOTS * _SLOT.size


class Positions:
    """Open with `Positions.open(path)` in a worker thread (it may create the file)."""

    def __init__(self, mapped: mmap.mmap, started_ns: int, slots: dict[str, int]) -> None:
        self._map = mapped
        self.started_ns = started_ns
        self._slots = slots  # container id -> slot index
        self.values: dict[str, int] = {}
        for cid, i in slots.items():
            self.values[cid] = _SLOT.unpack_from(mapped, _HEAD.size + i * _SLOT.size)[1]

    @classmethod
    def open(cls, path: Path, now_ns: int) -> Positions:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fresh = os.fstat(fd).st_size != SIZE
            if fresh:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, SIZE)
            mapped = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        magic, started = _HEAD.unpack_from(mapped, 0)
        if fresh or magic != MAGIC or started <= 0:
            mapped[:] = bytes(SIZE)
            _HEAD.pack_into(mapped, 0, MAGIC, now_ns)
            started = now_ns
        slots: dict[str, int] = {}
        for i in range(SLOTS):
            raw, ns = _SLOT.unpack_from(mapped, _HEAD.size + i * _SLOT.size)
            cid = raw.rstrip(b"\0").decode("ascii", errors="replace")
            if cid and ns > 0:
                slots[cid] = i
        return cls(mapped, started, slots)

    def put(self, cid: str, ns: int) -> None:
        i = self._slots.get(cid)
        if i is None:
            used = set(self._slots.values())
            free = next((n for n in range(SLOTS) if n not in used), None)
            if free is None:
                return  # more containers than slots: this one resumes from its start
            i = self._slots[cid] = free
        _SLOT.pack_into(self._map, _HEAD.size + i * _SLOT.size, cid.encode()[:64], ns)
        self.values[cid] = ns

    def keep_only(self, cids: set[str]) -> None:
        """Free the slots of containers that are gone."""
        for cid in [c for c in self._slots if c not in cids]:
            i = self._slots.pop(cid)
            _SLOT.pack_into(self._map, _HEAD.size + i * _SLOT.size, b"", 0)
            self.values.pop(cid, None)
