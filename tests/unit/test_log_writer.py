"""The log's writer thread (agent/logs.py LineWriter): a stalled stderr never holds the caller
(the event loop); lines come out in order; a flood beyond the queue is counted and said."""

from __future__ import annotations

import io
import json
import threading
import time

from agent.logs import LineWriter
from tests.helpers import wait_until


class StalledStream(io.StringIO):
    """A stream whose writes block until `go` is set (a full pipe, a file system stall)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        self.go.wait()
        return super().write(s)


def test_a_stalled_stream_never_holds_the_caller_and_lines_keep_their_order() -> None:
    stream = StalledStream()
    writer = LineWriter(stream)
    writer.put("line 0")
    wait_until(lambda: stream.writes, 5)  # the writer thread is stuck in its first write
    t0 = time.monotonic()
    for n in range(1, 100):
        writer.put(f"line {n}")
    assert time.monotonic() - t0 < 0.5  # (generous: 99 appends to a queue)
    stream.go.set()
    wait_until(lambda: stream.getvalue().count("\n") == 100, 5)
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(100)]


def test_beyond_the_queue_lines_are_dropped_counted_and_said_once_the_stream_moves() -> None:
    stream = StalledStream()
    writer = LineWriter(stream, max_lines=10)
    writer.put("first")
    wait_until(lambda: stream.writes, 5)
    for n in range(25):
        writer.put(f"flood {n}")
    stream.go.set()
    wait_until(lambda: "log_lines_dropped" in stream.getvalue(), 5)
    lines = stream.getvalue().splitlines()
    assert lines[:11] == ["first"] + [f"flood {n}" for n in range(10)]
    dropped = json.loads(lines[11])
    assert dropped["event"] == "log_lines_dropped" and dropped["count"] == 15


def test_flush_writes_what_waits_from_the_calling_thread() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream)
    for n in range(3):
        writer.put(f"line {n}")
    writer.flush()
    assert stream.getvalue() == "line 0\nline 1\nline 2\n"
