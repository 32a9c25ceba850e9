"""The log stream's wire format, as the reference sends it (src/logging/balena-backend.ts):

- `POST {apiEndpoint}/device/v2/{uuid}/log-stream` with `Authorization: Bearer <device key>`,
  `Content-Type: application/x-ndjson`, `Content-Encoding: gzip` (balena-backend.ts:102-108);
- one JSON object a line: `message`, `timestamp` (ms), `isSystem: true` for the agent's own
  lines, `isStdErr` when true, `serviceId` for a container's line (src/logging/types.ts:1-15;
  log-backend.ts drops a container line without serviceId, balena-backend.ts:89);
- a message longer than 10,000 characters is cut and ends in `[...]` (balena-backend.ts:19,93);
- the gzip stream is sync-flushed on a throttle, the lines written meanwhile coalesced into one
  flush: the reference's lodash `throttle(flush, 100, {leading: false})` (ZLIB_TIMEOUT,
  balena-backend.ts:14,209-219) flushes 100 ms after the first line written since the last
  flush. Here the flush comes on the next tick of a grid every `logFlushMs` (default 1,000 ms,
  at least 100): each tick costs ≈ 0.5 ms of CPU whatever it carries, most of it the kernel's
  (the loop's sleep and wake-up, the send that wakes the receiver), so at 50 lines a second
  two ticks a second alone spent half the CPU target of 20 ms per 1,000 lines
  (docs/benchmarks.md "Cloud logs"); a line waits at most the interval.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import NamedTuple

from agent.engine.logwire import LogFrame

PATH = "/device/v2/{uuid}/log-stream"
CONTENT_TYPE = "application/x-ndjson"
FLUSH_S = 1.0  # default logFlushMs / 1000; the reference: 0.1 (see above)
MIN_FLUSH_S = 0.1
MAX_MESSAGE_CHARS = 10_000
OMISSION = "[...]"
SYSTEM_KEY = ""  # the buffer's and rate limiter's key for the agent's own lines


class Entry(NamedTuple):
    """One encoded line and what the buffer needs to know about it (a named tuple: one is
    made per line, and a tuple is the cheapest immutable record to build)."""

    line: bytes  # the NDJSON line, newline included
    key: str  # service name; SYSTEM_KEY for the agent's own lines
    ts_ms: int
    container: str = ""  # container id ("" for system lines)
    ns: int = 0  # the engine's time of the line: the container's resume position


def truncate(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - len(OMISSION)] + OMISSION


def encode(
    message: str,
    ts_ms: int,
    *,
    service_id: int | None = None,
    stderr: bool = False,
    system: bool = False,
) -> bytes:
    # written by hand (the C string escaper, the rest fixed): json.dumps of a dict per line
    # was most of the per-line cost; tests/unit/cloudlogs/test_wire.py checks it parses
    text = '{"message":' + encode_basestring(truncate(message)) + ',"timestamp":' + str(ts_ms)
    if system:
        text += ',"isSystem":true'
    if stderr:
        text += ',"isStdErr":true'
    if service_id is not None and not system:
        text += ',"serviceId":' + str(int(service_id))
    return (text + "}\n").encode(errors="replace")


def container_entries(
    frames: Sequence[LogFrame], key: str, container: str, service_id: int | None
) -> list[Entry]:
    """A container's lines as `encode` writes them, a batch at once: the fields after the
    message and timestamp are the same for every line of the container (stdout or stderr), so
    they are written once, and a line is one f-string (this runs for every line shipped)."""
    sid = "" if service_id is None else f',"serviceId":{int(service_id)}'
    tails = (sid + "}\n", ',"isStdErr":true' + sid + "}\n")
    esc, new, out = encode_basestring, tuple.__new__, []
    for ns, stderr, text in frames:
        if len(text) > MAX_MESSAGE_CHARS:
            text = truncate(text)
        ts_ms = ns // 1_000_000
        line = f'{{"message":{esc(text)},"timestamp":{ts_ms}{tails[stderr]}'
        out.append(new(Entry, (line.encode("utf-8", "replace"), key, ts_ms, container, ns)))
    return out


def system_entry(message: str, ts_ms: int, error: bool = False) -> Entry:
    return Entry(encode(message, ts_ms, system=True, stderr=error), SYSTEM_KEY, ts_ms)


class GzipStream:
    """One request body: a single gzip member, sync-flushed after each batch so the cloud can
    decode every line sent so far; `end()` closes the member."""

    def __init__(self, level: int = 6) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)
        self.raw_bytes = 0
        self.wire_bytes = 0
        self.last_raw_bytes = 0  # of the last batch

    def batch(self, lines: list[bytes]) -> bytes:
        data = b"".join(lines)
        self.last_raw_bytes = len(data)
        self.raw_bytes += len(data)
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        self.wire_bytes += len(out)
        return out

    def end(self) -> bytes:
        out = self._z.flush(zlib.Z_FINISH)
        self.wire_bytes += len(out)
        return out
