"""The cloud log channel, put together: followers → buffer → sender, the agent's system lines,
the positions that make a restart resume exactly, and the on/off switch
(`SUPERVISOR_LOG_CONTROL`, read at every tick: off stops the followers and the stream and
forgets what waits, as the reference's `enable(false)` drops lines, src/logging/index.ts:101).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.cloudlogs import spill
from agent.cloudlogs.buffer import LogBuffer
from agent.cloudlogs.followers import Followers
from agent.cloudlogs.positions import Positions
from agent.cloudlogs.ratelimit import RateLimiter
from agent.cloudlogs.sender import Sender
from agent.cloudlogs.system import KINDS, system_message
from agent.cloudlogs.wire import FLUSH_S, MIN_FLUSH_S, Entry, system_entry
from agent.engine.docker import DockerEngine
from agent.events.bus import Bus
from agent.events.kinds import Payload

log = structlog.get_logger("agent.cloudlogs")

TICK_S = 0.2  # at most 5 housekeeping rounds a second (spill, drop lines)
IDLE_TICK_S = 30.0  # with nothing to do: the channel costs no wake-ups when idle
PRUNE_S = 10.0  # between dropping the positions of containers that are gone
SPILL_DIR = "cloud-logs"
POSITIONS_FILE = "cloud-logs.pos"


@dataclass(frozen=True)
class LogSettings:
    """config.json: `logBufferBytes` (memory), `logSpillBytes` (disk, 0 = no spill),
    `logRateLimit` (lines a second per service), `logRateBurst` and `logFlushMs` (the
    longest a line waits on the device: the stream is flushed at most that often)."""

    mem_bytes: int = 256 * 1024  # the reference's MAX_PENDING_BYTES (balena-backend.ts:20)
    disk_bytes: int = 4 * 1024 * 1024
    rate: float = 500.0
    burst: float = 1000.0
    flush_s: float = FLUSH_S

    @classmethod
    def of(cls, extra: Mapping[str, Any]) -> LogSettings:
        def num(key: str, default: float, low: float) -> float:
            value = extra.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= low:
                return value
            if value is not None:
                log.error("config_invalid", key=key, value=value, using=default)
            return default

        d = cls()
        return cls(
            mem_bytes=int(num("logBufferBytes", d.mem_bytes, 4096)),
            disk_bytes=int(num("logSpillBytes", d.disk_bytes, 0)),
            rate=num("logRateLimit", d.rate, 1),
            burst=num("logRateBurst", d.burst, 1),
            flush_s=num("logFlushMs", d.flush_s * 1000, MIN_FLUSH_S * 1000) / 1000,
        )


class CloudLogs:
    def __init__(
        self,
        engine: DockerEngine,
        settings: LogSettings,
        cloud: Callable[[], tuple[str, str, str]],  # endpoint, uuid, key (once registered)
        data_dir: Path,
        enabled: Callable[[], bool],
        bus: Bus,
    ) -> None:
        """`bus`: the agent's; its events become the dashboard's system lines (system.py)."""
        self._engine = engine
        self._bus = bus
        self._data_dir = data_dir
        self.settings = settings
        self._enabled = enabled
        self._spill_dir = data_dir / SPILL_DIR
        self._poke = asyncio.Event()
        self.buffer = LogBuffer(
            settings.mem_bytes, settings.disk_bytes, self._spill_dir, pressure=self._poke
        )
        self.limiter = RateLimiter(settings.rate, settings.burst)
        self.positions: Positions | None = None  # opened by run()
        self._cloud = cloud
        self.sender: Sender | None = None
        self.followers: Followers | None = None
        self._on = False
        self._announced = False

    # --- the agent's own lines ---------------------------------------------------------------

    def system(self, event: Payload) -> None:
        """A bus handler (on the event loop's thread): the event's system line, if it has one
        and the stream is on."""
        if not self._on:
            return
        found = system_message(event)
        if found is not None:
            self.buffer.put(system_entry(found[0], int(time.time() * 1000), error=found[1]))

    # --- positions ----------------------------------------------------------------------------

    def _written(self, batch: list[Entry]) -> None:
        """About to write `batch`: where each container's log stands after it."""
        positions = self.positions
        if positions is None:
            return
        latest: dict[str, int] = {}
        for e in batch:  # the newest time, not the last line's: stdout and stderr interleave
            if e.container and e.ns > latest.get(e.container, 0):
                latest[e.container] = e.ns
        for cid, ns in latest.items():
            if ns > positions.values.get(cid, 0):
                positions.put(cid, ns)

    # --- life cycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        await asyncio.to_thread(spill.clear, self._spill_dir)
        if self.positions is None:
            self.positions = await asyncio.to_thread(
                Positions.open, self._data_dir / POSITIONS_FILE, time.time_ns()
            )
        self.sender = Sender(
            *self._cloud(), self.buffer, self._written, flush_s=self.settings.flush_s
        )
        unsubscribe = [self._bus.subscribe(kind, self.system) for kind in KINDS]
        positions, started_ns = dict(self.positions.values), self.positions.started_ns
        try:
            while True:
                await self._wait_enabled()
                await self._run_on(positions, started_ns)
                # turned on again later: only what is logged from then on
                positions, started_ns = {}, time.time_ns()
        finally:
            self._on = False
            for stop in unsubscribe:
                stop()

    def poke(self) -> None:
        """The config changed (SUPERVISOR_LOG_CONTROL may have): look now."""
        self._poke.set()

    async def _nap(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._poke.wait()
        self._poke.clear()

    async def _wait_enabled(self) -> None:
        while not self._enabled():
            await self._nap(IDLE_TICK_S)

    async def _run_on(self, positions: dict[str, int], started_ns: int) -> None:
        assert self.sender is not None
        log.info("cloud_logs_on", spill_bytes=self.settings.disk_bytes)
        self._on = True
        if not self._announced:  # the agent started before the sink was there
            self._announced = True
            self.buffer.put(system_entry("Supervisor starting", int(time.time() * 1000)))
        self.followers = Followers(
            self._engine,
            self.buffer,
            self.limiter,
            positions,
            started_ns,
            wake=self._poke,
            pace=self.settings.flush_s,
        )
        tasks = [
            asyncio.create_task(self.followers.run(), name="cloudlogs-followers"),
            asyncio.create_task(self.sender.run(), name="cloudlogs-sender"),
        ]
        for task in tasks:
            task.add_done_callback(lambda _t: self._poke.set())
        pruned = time.monotonic()
        try:
            while self._enabled():
                if time.monotonic() - pruned >= PRUNE_S and self.positions is not None:
                    self.positions.keep_only(set(self.followers.last))
                    pruned = time.monotonic()
                for task in tasks:
                    if task.done():  # a bug: say it, the supervisor restarts the channel
                        task.result()
                await self.buffer.spill()
                self._rate_notices()
                # woken by: memory past its bound, a line dropped, a config change, a task end
                await self._nap(TICK_S if self.limiter.pending() else IDLE_TICK_S)
                await asyncio.sleep(TICK_S)
        finally:
            self._on = False
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await self.buffer.clear()
            if self.positions is not None and not self._enabled():
                self.positions.keep_only(set())  # turned off: nothing to resume from later
        log.info("cloud_logs_off")

    def _rate_notices(self) -> None:
        now = time.monotonic()
        for key in self.limiter.pending():
            got = self.limiter.notice(key, now)
            if got is None:
                continue
            lines, first_ms, last_ms = got
            span = time.strftime("%H:%M:%S", time.gmtime(first_ms / 1000))
            end = time.strftime("%H:%M:%S", time.gmtime(last_ms / 1000))
            self.buffer.put(
                system_entry(
                    f"Service '{key}' logs faster than {self.settings.rate:g} lines/s: "
                    f"dropped {lines} line(s) from {span} to {end} UTC",
                    int(time.time() * 1000),
                    error=True,
                )
            )
