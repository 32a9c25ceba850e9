"""Structured logging: stable event names, JSON lines on devices, readable in a terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

EventSink = Callable[[MutableMapping[str, Any]], None]
_SINKS: list[EventSink] = []
# structlog processors run on every event before it is written (a seam for tests:
# testbed/testhooks.py hooks its crash points here, before `configure`; empty on a device)
EXTRA_PROCESSORS: list[Any] = []


def add_sink(sink: EventSink) -> None:
    """Also hand every logged event (a dict with its stable `event` name) to `sink`: metrics
    count what the log says, so the two can't disagree."""
    _SINKS.append(sink)


def remove_sink(sink: EventSink) -> None:
    if sink in _SINKS:
        _SINKS.remove(sink)


def _to_sinks(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    for sink in list(_SINKS):
        with contextlib.suppress(Exception):  # a broken sink must never break logging
            sink(event)
    return event


def configure(fmt: str = "auto", level: str = "info") -> None:
    """`fmt`: json | console | auto (console when stderr is a terminal)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    hooks = list(EXTRA_PROCESSORS)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *hooks,
            _to_sinks,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
