"""The bounded log buffer between the followers and the sender.

Lines wait in memory (at most `mem_bytes`); past that the oldest are moved to segment files
in the spill dir (at most `disk_bytes` in all), and read back in order when the link returns:
what was buffered goes out before live lines. When the disk bound is hit the oldest segment
goes, when even memory overflows (spill dir unusable, or the spill behind) the oldest lines
go; each loss is tallied per service with its time span and `take_drop_notice` turns the tally
into one system line. Unlike the reference, which drops lines silently once its 256 KiB
stream buffer is full (balena-backend.ts:20,246-262), nothing is lost without a word.

`put` is cheap and synchronous (the followers call it on the loop); `spill` and `take` are
coroutines sharing one lock, so the order "segments, then memory" holds while a spill writes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from agent.cloudlogs import spill as disk
from agent.cloudlogs.wire import SYSTEM_KEY, Entry, system_entry

SEGMENT_BYTES = 128 * 1024


@dataclass
class Tally:
    lines: int = 0
    first_ms: int = 0
    last_ms: int = 0

    def add(self, lines: int, first_ms: int, last_ms: int) -> None:
        self.first_ms = first_ms if not self.lines else min(self.first_ms, first_ms)
        self.last_ms = max(self.last_ms, last_ms)
        self.lines += lines


@dataclass
class _Segment:
    path: Path
    nbytes: int
    tallies: dict[str, Tally] = field(default_factory=dict)


def _tally(entries: list[Entry]) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    for e in entries:
        out.setdefault(e.key, Tally()).add(1, e.ts_ms, e.ts_ms)
    return out


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))


def drop_message(tallies: dict[str, Tally], why: str) -> str:
    total = sum(t.lines for t in tallies.values())
    parts = []
    for key in sorted(tallies):
        t = tallies[key]
        who = f"service '{key}'" if key != SYSTEM_KEY else "the agent"
        parts.append(f"{t.lines} of {who} from {_clock(t.first_ms)} to {_clock(t.last_ms)} UTC")
    return f"Dropped {total} log line(s) {why}: " + "; ".join(parts)


class LogBuffer:
    def __init__(
        self,
        mem_bytes: int,
        disk_bytes: int,
        spill_dir: Path | None,
        pressure: asyncio.Event | None = None,
    ) -> None:
        self.mem_bytes = mem_bytes
        self._pressure = pressure  # set when memory is past its bound: time to spill
        self.disk_bytes = disk_bytes
        self.spill_dir = spill_dir if disk_bytes > 0 else None
        self._front: deque[Entry] = deque()  # sent once and sent again (a failed request)
        self._loaded: deque[Entry] = deque()  # the oldest segment, read back
        self._segments: deque[_Segment] = deque()
        self._mem: deque[Entry] = deque()
        self._mem_size = 0
        self._disk_size = 0
        self._seq = 0
        self._drops: dict[str, Tally] = {}
        self._unlink: list[Path] = []  # segments read back, removed at the next spill()
        self.dropped_total = 0
        self._lock = asyncio.Lock()
        self.ready = asyncio.Event()  # something to send

    # --- sizes --------------------------------------------------------------------------------

    @property
    def memory_bytes(self) -> int:
        return (
            self._mem_size
            + sum(len(e.line) for e in self._loaded)
            + sum(len(e.line) for e in self._front)
        )

    @property
    def spilled_bytes(self) -> int:
        return self._disk_size

    def __len__(self) -> int:
        return (
            len(self._front)
            + len(self._loaded)
            + len(self._mem)
            + sum(t.lines for s in self._segments for t in s.tallies.values())
        )

    @property
    def needs_spill(self) -> bool:
        return self._mem_size > self.mem_bytes

    # --- in -----------------------------------------------------------------------------------

    def put(self, entry: Entry) -> None:
        self.put_all([entry])

    def put_all(self, entries: list[Entry]) -> None:
        """`put` for a batch (a follower's lines of one tick): one size count, one overflow
        check, one wake-up of the sender."""
        if not entries:
            return
        self._mem.extend(entries)
        self._mem_size += sum([len(e[0]) for e in entries])
        if self._mem_size > self.mem_bytes:
            if self._pressure is not None:
                self._pressure.set()
            limit = self.mem_bytes * (2 if self.spill_dir is not None else 1)
            while self._mem_size > limit and self._mem:
                old = self._mem.popleft()
                self._mem_size -= len(old.line)
                self._drop({old.key: Tally(1, old.ts_ms, old.ts_ms)})
        self.ready.set()

    def _drop(self, tallies: dict[str, Tally]) -> None:
        for key, t in tallies.items():
            self._drops.setdefault(key, Tally()).add(t.lines, t.first_ms, t.last_ms)
            self.dropped_total += t.lines
        self.ready.set()  # the notice is something to send

    async def spill(self) -> None:
        """Move the oldest lines in memory past the bound to segment files, then enforce the
        disk bound by deleting the oldest segments."""
        if self._unlink:
            done, self._unlink = self._unlink, []
            await asyncio.to_thread(disk.remove_all, done)
        if self.spill_dir is None or not self.needs_spill:
            return
        async with self._lock:
            while self._mem_size > self.mem_bytes // 2 and self._mem:
                chunk: list[Entry] = []
                size = 0
                while self._mem and size < SEGMENT_BYTES:
                    e = self._mem.popleft()
                    chunk.append(e)
                    size += len(e.line)
                self._mem_size -= size
                self._seq += 1
                path = self.spill_dir / f"{disk.PREFIX}{self._seq:08d}"
                try:
                    written = await asyncio.to_thread(disk.write_segment, path, chunk)
                except OSError:
                    await asyncio.to_thread(disk.remove, path)
                    self._drop(_tally(chunk))  # a full disk: these are lost, and said so
                    continue
                self._segments.append(_Segment(path, written, _tally(chunk)))
                self._disk_size += written
            while self._disk_size > self.disk_bytes and self._segments:
                old = self._segments.popleft()
                self._disk_size -= old.nbytes
                await asyncio.to_thread(disk.remove, old.path)
                self._drop(old.tallies)

    # --- out ----------------------------------------------------------------------------------

    def take_drop_notice(self, why: str = "while the log buffer was full") -> Entry | None:
        if not self._drops:
            return None
        tallies, self._drops = self._drops, {}
        return system_entry(drop_message(tallies, why), int(time.time() * 1000), error=True)

    @property
    def pending(self) -> bool:
        """Lines (or a drop notice) wait to be sent."""
        return bool(self._front or self._loaded or self._mem or self._segments or self._drops)

    def take_now(self, max_bytes: int) -> list[Entry] | None:
        """`take` without a wait, when no segment must be read first and no spill is under way
        (the usual case: the lines of a tick, all in memory); else None: call `take`."""
        if self._lock.locked() or (self._segments and not self._front and not self._loaded):
            return None
        return self._take(max_bytes)

    async def take(self, max_bytes: int) -> list[Entry]:
        """The oldest lines, up to `max_bytes` (at least one when there is any), removed."""
        async with self._lock:
            if not self._front and not self._loaded and self._segments:
                seg = self._segments[0]
                entries = await asyncio.to_thread(disk.read_segment, seg.path)
                # not cancelled meanwhile (else the segment stays, to be read again)
                self._segments.popleft()
                self._disk_size -= seg.nbytes
                self._loaded.extend(entries)
                self._unlink.append(seg.path)
            return self._take(max_bytes)

    def _take(self, max_bytes: int) -> list[Entry]:
        mem = self._mem
        if (
            mem
            and self._mem_size <= max_bytes
            and not (self._front or self._loaded or self._segments)
        ):
            self._mem = deque()  # the usual case, a tick's lines: all of memory at once
            self._mem_size = 0
            self.ready.clear()
            return list(mem)
        out: list[Entry] = []
        size = 0
        for source in (self._front, self._loaded, self._mem):
            while source and (not out or size + len(source[0].line) <= max_bytes):
                e = source.popleft()
                out.append(e)
                size += len(e.line)
                if source is self._mem:
                    self._mem_size -= len(e.line)
            if source or (source is self._loaded and self._segments):
                break  # older lines are left: never skip ahead of them
        if not (self._front or self._loaded or self._segments or self._mem):
            self.ready.clear()
        return out

    def requeue(self, entries: list[Entry]) -> None:
        """Lines taken but not delivered (a request that failed): first in line again, in
        their order."""
        self._front.extendleft(reversed(entries))
        if entries:
            self.ready.set()

    async def clear(self) -> None:
        """Cloud logging was turned off: what waits is not sent."""
        async with self._lock:
            paths = [seg.path for seg in self._segments] + self._unlink
            self._unlink = []
            await asyncio.to_thread(disk.remove_all, paths)
        self._segments.clear()
        self._front.clear()
        self._loaded.clear()
        self._mem.clear()
        self._mem_size = self._disk_size = 0
        self._drops.clear()
        self.ready.clear()
