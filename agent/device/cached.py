"""Reads of /proc, /sys and the data dir's file system for reports, at most once per `ttl_s`
(the reporter builds a report on every status change, download progress included) and never on
the event loop: there a stale value is served while a worker thread reads the new one (`prime`
reads the first at start). Called from a worker thread, it reads in place."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("agent.device")


class Cached:
    def __init__(self, ttl_s: float, read: Callable[[], dict[str, Any]]) -> None:
        self._ttl_s = ttl_s
        self._read = read
        self._at = float("-inf")
        self._value: dict[str, Any] = {}
        self._refreshing: asyncio.Task[None] | None = None

    def __call__(self) -> dict[str, Any]:
        if time.monotonic() - self._at > self._ttl_s:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a worker thread
                self._at, self._value = time.monotonic(), self._read()
                return dict(self._value)
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = loop.create_task(self.prime())
        return dict(self._value)

    async def prime(self) -> None:
        try:
            value = await asyncio.to_thread(self._read)
        except Exception as exc:  # keep the old value; try again after ttl_s
            log.warning("device_info_unreadable", error=repr(exc))
            value = self._value
        self._at, self._value = time.monotonic(), value
