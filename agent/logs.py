"""Structured logging: stable event names, JSON lines on devices, readable in a terminal."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import sys
import threading
import time
from collections import deque
from typing import Any, TextIO

import structlog

# structlog processors run on every event before it is written (a seam for tests:
# testbed/testhooks.py hooks its crash points here, before `configure`; empty on a device)
EXTRA_PROCESSORS: list[Any] = []


# lines waiting for the writer thread at most; beyond, the newest are dropped and counted
QUEUE_LINES = 10_000


class LineWriter:
    """Log lines are written by a thread of their own: a stalled stderr (a full pipe to
    journald, a file system under load) never holds the event loop, which only appends to a
    queue. Beyond `QUEUE_LINES` waiting, lines are dropped and counted, and one
    `log_lines_dropped` line says how many as soon as the stream takes lines again."""

    def __init__(self, stream: TextIO, max_lines: int = QUEUE_LINES) -> None:
        self._stream = stream
        self._max = max_lines
        self._lines: deque[str] = deque()
        self._dropped = 0
        self._ready = threading.Condition()  # guards the queue only, never held over a write
        self._io = threading.Lock()  # one writer at a time, in order
        self._thread: threading.Thread | None = None

    def put(self, line: str) -> None:
        with self._ready:
            if len(self._lines) >= self._max:
                self._dropped += 1
                return
            self._lines.append(line)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._thread.start()
            self._ready.notify()

    def flush(self) -> None:
        """Write what waits, from the calling thread (at exit; before a deliberate crash)."""
        with self._io:
            with self._ready:
                batch = list(self._lines)
                self._lines.clear()
                if self._dropped:
                    batch.append(self._drop_line())
                    self._dropped = 0
            if batch:
                with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr
                    self._stream.write("\n".join(batch) + "\n")
                    self._stream.flush()

    def _drop_line(self) -> str:
        return json.dumps(
            {
                "event": "log_lines_dropped",
                "level": "warning",
                "count": self._dropped,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._lines and not self._dropped:
                    self._ready.wait()
            self.flush()


class QueuedLogger:
    """structlog's logger: the rendered line goes to the `LineWriter`."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.put(message)

    log = debug = info = warn = warning = error = err = fatal = exception = critical = msg


_WRITER: LineWriter | None = None


def flush() -> None:
    """Write the log lines still queued (the writer thread normally does, at once)."""
    if _WRITER is not None:
        _WRITER.flush()


def configure(fmt: str = "auto", level: str = "info") -> None:
    """`fmt`: json | console | auto (console when stderr is a terminal)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    hooks = list(EXTRA_PROCESSORS)
    global _WRITER
    if _WRITER is None:
        _WRITER = LineWriter(sys.stderr)
        atexit.register(flush)
    writer = _WRITER
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *hooks,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=lambda *_args: QueuedLogger(writer),
        cache_logger_on_first_use=True,
    )
