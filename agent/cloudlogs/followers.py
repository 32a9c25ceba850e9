"""One follower per running supervised container, feeding the buffer.

A follower starts when the engine says a container started (its events stream; a rescan at
start, after the engine comes back and every `RESCAN_S`, 5 minutes, as a safety net) and reads
the container's log with nanosecond times from where it left off: in this process the time of
the last line read, across a restart the position recorded when that line was written to the
cloud (positions.py). A line at or before that time is skipped, so a container restart, an engine
restart or an agent restart neither repeats nor loses lines. A container never followed
before reads its whole log if it was created after cloud logging first ran here, else from
now (an adopted device does not upload its services' history).

Each line passes the per-service rate limiter first; a dropped line costs a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from agent.cloudlogs.buffer import LogBuffer
from agent.cloudlogs.ratelimit import RateLimiter
from agent.cloudlogs.wire import FLUSH_S, container_entries
from agent.engine.docker import DockerEngine
from agent.engine.logframes import container_starts, is_tty, log_frames, supervised_containers
from agent.errors import EngineError
from agent.model import ContainerState
from agent.waits import wait_for

log = structlog.get_logger("agent.cloudlogs")

RESCAN_S = 300.0  # a safety net: starts come from the engine's events
ENGINE_RETRY_S = 2.0


class Followers:
    def __init__(
        self,
        engine: DockerEngine,
        buffer: LogBuffer,
        limiter: RateLimiter,
        positions: dict[str, int],
        started_ns: int,
        clock: Callable[[], float] = time.monotonic,
        wake: asyncio.Event | None = None,
        pace: float = FLUSH_S,
    ) -> None:
        self._pace = pace  # the grid the logs are read on (the sender flushes on it)
        self._wake = wake  # set when the rate limiter drops a line (the channel says so)
        self._engine = engine
        self._buffer = buffer
        self._limiter = limiter
        self.last: dict[str, int] = dict(positions)  # container -> ns of the last line read
        self._started_ns = started_ns  # when cloud logging first ran on this device
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tty: dict[str, bool] = {}
        self._clock = clock
        self._rescan = asyncio.Event()

    @property
    def following(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Follow until cancelled: the engine's start events, and rescans."""
        events = asyncio.create_task(self._watch_events(), name="cloudlogs-events")
        try:
            while True:
                self._rescan.clear()
                with contextlib.suppress(EngineError):  # engine down: the next scan follows
                    await self._scan()
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._rescan.wait(), RESCAN_S)
        finally:
            events.cancel()
            for task in self._tasks.values():
                task.cancel()
            self._tasks.clear()

    async def _watch_events(self) -> None:
        while True:
            try:
                async for _cid in container_starts(self._engine):
                    self._rescan.set()  # "" (connected) included: what started meanwhile
            except EngineError:
                pass
            await asyncio.sleep(ENGINE_RETRY_S)

    async def _scan(self) -> None:
        containers = await supervised_containers(self._engine)
        ids = {c.id for c in containers}
        for c in containers:
            if c.running and c.id not in self._tasks:
                if c.id not in self._tty:
                    self._tty[c.id] = await is_tty(self._engine, c.id)
                self._tasks[c.id] = asyncio.create_task(
                    self._follow(c, self._since(c)), name=f"cloudlogs-{c.id[:12]}"
                )
        for gone in [k for k in self.last if k not in ids]:
            del self.last[gone]
            self._tty.pop(gone, None)

    def _since(self, c: ContainerState) -> int | None:
        if c.id in self.last:
            return self.last[c.id]
        if c.created_ts >= self._started_ns // 1_000_000_000:  # whole seconds
            return None  # new since cloud logging runs here: its whole log
        now = time.time_ns()
        self.last[c.id] = now
        return now

    async def _follow(self, c: ContainerState, since_ns: int | None) -> None:
        key, service_id = c.service_name, c.service_id
        # the engine answers `since` with the lines at or after it: those at it were read
        # before. Only those are skipped: past it, times are not in order — the engine copies
        # stdout and stderr apart and may write a later-stamped stderr line first (a service
        # printing to both at once), so "older than the last line" is no test of "seen".
        floor = last = since_ns or 0
        limiter, put, clock = self._limiter, self._buffer.put_all, self._clock
        try:
            async for batch in log_frames(
                self._engine, c.id, since_ns, True, self._tty.get(c.id, False), pace=self._pace
            ):
                # a batch at once (the lines of a tick): this runs for every line shipped
                fresh = [f for f in batch if f[0] > floor] if floor else batch
                if not fresh:
                    continue
                last = max(last, max(fresh)[0])  # where a re-opened stream resumes
                passed = limiter.admit(key, clock(), len(fresh))
                if passed < len(fresh):
                    first_ms, last_ms = fresh[passed].ns // 1_000_000, fresh[-1].ns // 1_000_000
                    limiter.dropped(key, len(fresh) - passed, first_ms, last_ms)
                    fresh = fresh[:passed]
                    if self._wake is not None:
                        self._wake.set()
                put(container_entries(fresh, key, c.id, service_id))
                self.last[c.id] = last
        except EngineError:
            pass  # gone meanwhile, or the engine went away: a later scan follows again
        except Exception:
            log.exception("cloud_logs_follow_failed", container=c.id[:12])
        finally:
            if self._tasks.get(c.id) is asyncio.current_task():
                del self._tasks[c.id]
            self._rescan.set()  # it stopped: restarted meanwhile? (an engine restart)
