"""Crash points for the fake-engine tier: the agent dies the n-th time it logs an event, or
reaches a state write (between the fsynced temp file and its rename), as testbed/testhooks.py
does to a real agent process with SIGKILL.

Here the "agent" is a Rig in the test's own loop: at the point the engine is frozen at once
(every further call fails, as nothing reaches an engine after a power cut), and the code that
got there is unwound with `Crashed` (a BaseException: no `except Exception` of the agent's
handles it). The test then calls `Rig.crash()` (its tasks cancelled, nothing flushed) and
starts a new Rig on the same store, lock dir and engine (`engine.revive()` first)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent import store
from tests.fakes.engine import FakeEngine


class Crashed(BaseException):
    """The agent's power cut, at a crash point."""


@dataclass
class CrashPoint:
    point: str  # a log event name, `state_write` or `state_write.<key>`
    n: int
    engine: FakeEngine
    loop: asyncio.AbstractEventLoop
    seen: int = 0
    reached: threading.Event = field(default_factory=threading.Event)  # (any thread)
    _reached: asyncio.Event = field(default_factory=asyncio.Event)  # (the loop's)

    def arrive(self, point: str) -> None:
        if self.reached.is_set() or point != self.point:
            return
        self.seen += 1
        if self.seen < self.n:
            return
        self.reached.set()
        self.engine.dead = True  # (from any thread) nothing more reaches the engine
        self.loop.call_soon_threadsafe(self.engine.die)  # and its event streams end
        self.loop.call_soon_threadsafe(self._reached.set)
        raise Crashed(f"crash point {self.point}:{self.n}")

    async def wait(self, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self._reached.wait()


@contextmanager
def crash_at(spec: str, engine: FakeEngine) -> Iterator[CrashPoint]:
    """`spec` = "<point>:<n>", as $DEVICE_AGENT_TEST_CRASH_AT; to be entered in the loop."""
    point, _, n = spec.rpartition(":")
    crash = CrashPoint(point, int(n), engine, asyncio.get_running_loop())

    def on_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        crash.arrive(str(event_dict.get("event")))
        return event_dict

    def on_write(key: str) -> None:
        crash.arrive("state_write")
        crash.arrive(f"state_write.{key}")

    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[on_event, *processors])
    store.BEFORE_REPLACE.append(on_write)
    try:
        yield crash
    finally:
        store.BEFORE_REPLACE.remove(on_write)
        structlog.configure(processors=processors)
