"""The engine's log stream as bytes → lines, without I/O (logframes.py does the reading).

The logs endpoint answers with chunked transfer encoding; a non-TTY container's log is
multiplexed (an 8-byte header per frame: stream 1 stdout / 2 stderr, 3 bytes padding, a
big-endian length, then the payload); each line starts with its RFC 3339 time in ns
(`timestamps=1`).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple

_HEADER = struct.Struct(">BxxxL")


class LogFrame(NamedTuple):
    """One line (a named tuple: one is made per line, the cheapest immutable record)."""

    ns: int  # engine time of the line, nanoseconds since the epoch
    stderr: bool
    text: str


_SECONDS_CACHE: dict[bytes, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch s (lines share it)
_NS_CACHE: dict[bytes, int] = {}  # the same, in ns (FrameSplitter's fast path)
_new_frame = tuple.__new__  # a LogFrame without its Python-level __new__ (one per line)


def parse_stamp(stamp: bytes) -> int | None:
    """`2024-05-01T10:00:00.123456789Z` (RFC 3339 with nanoseconds) → ns since the epoch."""
    head, _, frac = stamp.rstrip(b"Z").partition(b".")
    whole = _SECONDS_CACHE.get(head)
    if whole is None:
        whole = utc_seconds(head)  # once a second of log: arithmetic, not datetime (cold code)
        if whole is None:
            try:
                whole = int(datetime.fromisoformat(head.decode("ascii") + "+00:00").timestamp())
            except (UnicodeDecodeError, ValueError):
                return None
        if len(_SECONDS_CACHE) > 64:
            _SECONDS_CACHE.clear()
            _NS_CACHE.clear()
        _SECONDS_CACHE[head] = whole
        _NS_CACHE[bytes(head)] = whole * 1_000_000_000
    digits = (frac + b"000000000")[:9]
    return whole * 1_000_000_000 + (int(digits) if digits.isdigit() else 0)


def utc_seconds(head: bytes) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` (UTC) → seconds since the epoch; None for any other shape."""
    if len(head) != 19 or head[4:5] + head[7:8] + head[10:11] + head[13:14] + head[16:17] != (
        b"--T::"
    ):
        return None
    fields = (head[0:4], head[5:7], head[8:10], head[11:13], head[14:16], head[17:19])
    if not b"".join(fields).isdigit():
        return None
    y, m, d, hh, mm, ss = map(int, fields)
    if not (1 <= m <= 12 and 1 <= d <= 31 and hh < 24 and mm < 60 and ss < 61):
        return None
    # days since 1970-01-01 of a proleptic Gregorian date (the "days from civil" algorithm)
    y -= m <= 2
    era, yoe = divmod(y, 400)
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    return days * 86_400 + hh * 3_600 + mm * 60 + ss


def next_tick(now: float, period: float) -> float:
    """The next point after `now` on a grid every `period` seconds (of the loop's clock): the
    followers and the cloud sender all wake on it, so one wake-up serves them all."""
    return (math.floor(now / period) + 1) * period


def since_param(ns: int) -> str:
    """The engine's `since` as `seconds.nanoseconds` (it keeps lines at or after it)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


class FrameSplitter:
    """Payloads per stream → lines; a line split over two payloads is joined again."""

    def __init__(self) -> None:
        self._pending: dict[bool, bytes] = {False: b"", True: b""}

    def feed(self, stderr: bool, data: bytes, out: list[LogFrame]) -> None:
        buf = self._pending[stderr] + data
        *complete, self._pending[stderr] = buf.split(b"\n")
        seconds, new, append = _NS_CACHE, _new_frame, out.append
        for raw in complete:
            # the engine's stamp has a fixed shape (RFC3339NanoFixed: 9 digits, "Z"): its whole
            # second looked up (lines share it), the nanoseconds read as they stand
            if raw[29:31] == b"Z " and raw[19:20] == b".":
                whole = seconds.get(raw[:19])
                digits = raw[20:29]
                if whole is not None and digits.isdigit():
                    text = raw[31:].decode("utf-8", "replace")
                    if text[-1:] == "\r":
                        text = text.rstrip("\r")
                    append(new(LogFrame, (whole + int(digits), stderr, text)))
                    continue
            frame = _frame(raw, stderr)  # any other shape, and a second not seen yet
            if frame is not None:
                append(frame)

    @property
    def idle(self) -> bool:
        """No part of a line waits for the rest."""
        return not (self._pending[False] or self._pending[True])

    def rest(self) -> list[LogFrame]:
        out = [_frame(rest, stderr) for stderr, rest in self._pending.items() if rest]
        return [f for f in out if f is not None]


def split_frames(chunks: Iterator[tuple[bool, bytes]]) -> Iterator[LogFrame]:
    """Payloads per stream → lines (for callers that have them one by one)."""
    splitter = FrameSplitter()
    for stderr, data in chunks:
        out: list[LogFrame] = []
        splitter.feed(stderr, data, out)
        yield from out
    yield from splitter.rest()


def _frame(raw: bytes, stderr: bool) -> LogFrame | None:
    stamp, _, message = raw.partition(b" ")
    ns = parse_stamp(stamp)
    if ns is None:
        return None
    return LogFrame(ns, stderr, message.decode(errors="replace").rstrip("\r"))


def demux(buf: bytearray, splitter: FrameSplitter, out: list[LogFrame]) -> None:
    """Take every whole multiplexed frame off the front of `buf` (8-byte header: stream
    1 stdout / 2 stderr, 3 bytes padding, big-endian length; then the payload)."""
    pos = 0
    size = len(buf)
    run: list[bytearray] = []  # consecutive payloads of one stream: split into lines at once
    run_err = False
    while size - pos >= _HEADER.size:
        kind, length = _HEADER.unpack_from(buf, pos)
        end = pos + _HEADER.size + length
        if end > size:
            break
        err = kind == 2
        if run and err != run_err:
            splitter.feed(run_err, b"".join(run), out)
            run = []
        run_err = err
        run.append(buf[pos + _HEADER.size : end])
        pos = end
    if run:
        splitter.feed(run_err, b"".join(run), out)
    del buf[:pos]


class ChunkDecoder:
    """HTTP/1.1 chunked transfer encoding, fed whatever the socket gave: the payload bytes so
    far; `done` after the last (zero-size) chunk."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0  # bytes of the current chunk's data still to come
        self._crlf = False  # the CRLF after a chunk's data is next
        self.done = False
        self.count = 0  # chunks begun so far (the engine writes one a line)

    @property
    def idle(self) -> bool:
        """Between chunks: nothing of one waits for the rest."""
        return not (self._buf or self._left or self._crlf or self.done)

    def feed(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out: list[bytearray] = []
        pos, size_all = 0, len(buf)
        while not self.done:
            if self._left:  # the rest of a chunk cut by the last read
                take = min(self._left, size_all - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if size_all - pos < 2:
                    break
                pos += 2
                self._crlf = False
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            try:
                size = int(buf[pos:end], 16)  # the engine's: bare hex digits
            except ValueError:  # a chunk extension (";name=value"), or an empty size
                size = int(buf[pos:end].split(b";")[0].strip() or b"0", 16)
            pos = end + 2
            self.count += 1
            if size == 0:
                self.done = True
            elif pos + size + 2 <= size_all:  # the whole chunk and its CRLF (the usual case)
                out.append(buf[pos : pos + size])
                pos += size + 2
            else:
                self._left = size
        del buf[:pos]
        return b"".join(out)


# One line as the engine sends it for a non-TTY container: an HTTP chunk holding one
# multiplexed frame holding one stamped line. Matched in one pass (the regex engine's C), so a
# line costs no Python per layer (de-chunk, demux, split); the lengths are checked after.
_CHUNKED_LINE = re.compile(
    rb"([0-9a-fA-F]{1,8})\r\n"  # the chunk's size
    rb"([\x01\x02])\x00\x00\x00(....)"  # the frame's header: stream, big-endian length
    rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z "  # the stamp (RFC3339NanoFixed)
    rb"([^\n]*)\n\r\n",  # the line, its newline, the chunk's CRLF
    re.DOTALL,
)
_STAMPED = 32  # bytes of a frame beyond its text: the stamp (30), a space, the newline


class LogStream:
    """A followed logs response's body (chunked, multiplexed unless `tty`) → lines: the
    engine's usual shape (a chunk a line, a frame a chunk) read in one pass; anything else
    (a long line split over frames, a chunk cut by a read, another stamp) by the layers
    one by one (ChunkDecoder, demux, FrameSplitter), the same lines either way."""

    def __init__(self, chunked: bool, tty: bool) -> None:
        self._chunks = ChunkDecoder() if chunked else None
        self._tty = tty
        self._splitter = FrameSplitter()
        self._buf = bytearray()

    @property
    def count(self) -> int:
        """Chunks begun so far (the engine writes one a line); 0 when not chunked."""
        return self._chunks.count if self._chunks is not None else 0

    @property
    def done(self) -> bool:
        return self._chunks is not None and self._chunks.done

    def feed(self, data: bytes, out: list[LogFrame]) -> None:
        chunks = self._chunks
        if chunks is None:
            self._layers(data, out)
            return
        if not self._tty and chunks.idle and not self._buf and self._splitter.idle:
            used = self._fast(data, out)
            if used:
                data = data[used:]
        if data:
            self._layers(chunks.feed(data), out)

    def rest(self) -> list[LogFrame]:
        return self._splitter.rest()

    def _layers(self, data: bytes, out: list[LogFrame]) -> None:
        if self._tty:
            self._splitter.feed(False, data, out)
        else:
            self._buf += data
            demux(self._buf, self._splitter, out)

    def _fast(self, data: bytes, out: list[LogFrame]) -> int:
        """Whole chunk-frame-line units from the start of `data`; the bytes they took."""
        pos = count = 0
        seconds, new, append, big = _NS_CACHE, _new_frame, out.append, int.from_bytes
        for m in _CHUNKED_LINE.finditer(data):
            if m.start() != pos:
                break
            size, kind, length, second, nanos, text = m.groups()
            frame = len(text) + _STAMPED
            if big(length) != frame or int(size, 16) != frame + 8:
                break  # a frame over chunks, or lines sharing one: the layers read it
            whole = seconds.get(second)
            if whole is None:
                parse_stamp(second)  # a new second: cached, once
                whole = seconds.get(second)
                if whole is None:
                    break
            line = text.decode("utf-8", "replace")
            if line[-1:] == "\r":
                line = line.rstrip("\r")
            append(new(LogFrame, (whole + int(nanos), kind == b"\x02", line)))
            pos = m.end()
            count += 1
        self._chunks.count += count  # type: ignore[union-attr]
        return pos
