"""One follower per container, shared by every `/v2/local/logs` client, each with a bounded
queue of its own.

A client that reads slower than the services log (or not at all) loses lines, never the
agent's memory: past `MAX_QUEUED_LINES` lines or `MAX_QUEUED_BYTES` bytes its newest lines are
dropped and counted; when it catches up it gets a marker line saying how many, the log says so
(at most every `DROP_LOG_EVERY_S` per client, and once when it leaves) and
`device_agent_api_log_lines_dropped` counts them all. At most `MAX_STREAMS` clients at once
(429 beyond). The hub runs only while someone listens: the last client to leave stops its scan
and its followers (one engine log stream, hence one thread, per followed container).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from agent.api import actions
from agent.api.common import ApiError
from agent.api.syslines import KINDS, local_line
from agent.errors import EngineError
from agent.events.kinds import Payload
from agent.model import ContainerState
from agent.waits import wait_for

if TYPE_CHECKING:
    from agent.api.ports import ApiContext

log = structlog.get_logger("agent.api")

MAX_STREAMS = 8
MAX_QUEUED_LINES = 1000
MAX_QUEUED_BYTES = 512 * 1024
DROP_LOG_EVERY_S = 10.0
RESCAN_S = 1.0


@dataclass
class DropStats:
    lines: int = 0  # every line dropped for a slow client since start (read by /metrics)


STATS = DropStats()


def encode(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


class Subscriber:
    """One client: which containers it wants, and its bounded queue of encoded lines."""

    def __init__(self, wants: Callable[[ContainerState], bool], system: bool) -> None:
        self.wants = wants
        self.system = system  # also the agent's own messages
        self.started = time.time()
        self._lines: deque[bytes] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._dropped = 0  # since the last marker
        self.dropped_total = 0
        self._logged_total = 0
        self._logged_at = 0.0
        self.closed = False

    def close(self) -> None:
        """The agent is stopping: `next_batch` answers b"" from now on."""
        self.closed = True
        self._ready.set()

    def offer(self, line: bytes) -> None:
        if len(self._lines) >= MAX_QUEUED_LINES or self._bytes + len(line) > MAX_QUEUED_BYTES:
            self._dropped += 1
            self.dropped_total += 1
            STATS.lines += 1
            return
        self._lines.append(line)
        self._bytes += len(line)
        self._ready.set()

    async def next_batch(self) -> bytes:
        """Every queued line (and a marker for lines dropped since the last batch); b"" once
        closed."""
        await self._ready.wait()
        self._ready.clear()
        if self.closed:
            return b""
        batch = b"".join(self._lines)
        self._lines.clear()
        self._bytes = 0
        if self._dropped:
            batch += encode(
                {
                    "message": f"{self._dropped} log lines dropped: this client reads slower "
                    "than the services log",
                    "timestamp": int(time.time() * 1000),
                    "isSystem": True,
                    "dropped": self._dropped,
                }
            )
            self._dropped = 0
            self.log_drops(final=False)
        return batch

    def log_drops(self, final: bool) -> None:
        now = time.monotonic()
        new = self.dropped_total - self._logged_total
        if new and (final or now - self._logged_at >= DROP_LOG_EVERY_S):
            log.warning("api_log_lines_dropped", dropped=new, total=self.dropped_total)
            self._logged_total, self._logged_at = self.dropped_total, now


class LogHub:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx
        self._subs: set[Subscriber] = set()
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._scanner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._seen: set[str] = set()  # containers seen by an earlier scan
        self._last_at: dict[str, float] = {}  # container -> time of the last line followed
        self._unsubscribe: list[Callable[[], None]] = []
        self._failed = False  # a bug was logged (once)

    @property
    def streams(self) -> int:
        return len(self._subs)

    @property
    def followers(self) -> int:
        return len(self._followers)

    def subscribe(self, sub: Subscriber) -> None:
        if len(self._subs) >= MAX_STREAMS:
            raise ApiError(429, f"too many log streams open (at most {MAX_STREAMS}); retry later")
        if not self._subs:
            self._unsubscribe = [self._ctx.bus.subscribe(k, self._system) for k in KINDS]
            self._scanner = asyncio.create_task(self._scan_loop(), name="log-hub-scan")
        self._subs.add(sub)
        self._wake.set()

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        sub.log_drops(final=True)
        if self._subs:
            self._wake.set()  # followers nobody wants any more stop at the next scan
            return
        for stop in self._unsubscribe:
            stop()
        self._unsubscribe = []
        for task in [*self._followers.values(), *([self._scanner] if self._scanner else [])]:
            task.cancel()
        self._followers.clear()
        self._scanner = None
        self._seen.clear()
        self._last_at.clear()

    async def close(self) -> None:
        for sub in list(self._subs):
            sub.close()
            self.unsubscribe(sub)

    def _system(self, event: Payload) -> None:
        """A bus handler (on the event loop's thread): the agent's own line, to every client
        that wants them."""
        message = local_line(event)
        if message is None:
            return
        line = encode({"message": message, "timestamp": int(time.time() * 1000), "isSystem": True})
        for sub in self._subs:
            if sub.system:
                sub.offer(line)

    async def _scan_loop(self) -> None:
        first = True
        while self._subs:
            self._wake.clear()
            try:
                current = await actions.current_state(self._ctx)
                self._scan(current.containers, first)
                first = False
            except EngineError:
                pass  # the engine is down: try again at the next scan
            except Exception:  # a bug: say so once, keep the streams open
                if not self._failed:
                    log.exception("log_hub_scan_failed")
                self._failed = True
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), RESCAN_S)

    def _scan(self, containers: Iterable[ContainerState], first: bool) -> None:
        ids = {c.id for c in containers}
        wanted: set[str] = set()
        for c in containers:
            subs = [s for s in self._subs if s.wants(c)]
            if not subs:
                continue
            wanted.add(c.id)
            if c.id in self._followers or not (c.running or c.id not in self._last_at):
                continue
            if c.id in self._last_at:  # it ran before: go on where it stopped
                since: float | None = self._last_at[c.id]
            elif first or c.id in self._seen:
                since = min(s.started for s in subs)
            else:  # new since the last scan: its whole log
                since = None
            self._followers[c.id] = asyncio.create_task(self._follow(c, since))
        for cid in [cid for cid in self._followers if cid not in wanted]:
            self._followers.pop(cid).cancel()
        self._seen = ids
        self._last_at = {k: v for k, v in self._last_at.items() if k in ids}

    async def _follow(self, c: ContainerState, since: float | None) -> None:
        self._last_at.setdefault(c.id, since or 0.0)
        engine = self._ctx.engine
        try:
            async for at, message in engine.log_lines(c.id, since, follow=True):
                if since is not None and at <= since:
                    continue  # docker's `since` is whole seconds: skip what came before
                self._last_at[c.id] = at
                line = encode(
                    {
                        "message": message,
                        "timestamp": int(at * 1000),
                        "serviceName": c.service_name,
                        "serviceId": c.service_id,
                        "appId": c.app_id,
                        "isSystem": False,
                    }
                )
                for sub in self._subs:
                    if sub.wants(c):
                        sub.offer(line)
        except EngineError:
            pass  # gone meanwhile
        except Exception:
            if not self._failed:
                log.exception("log_hub_follow_failed", container=c.id[:12])
            self._failed = True
        finally:
            if self._followers.get(c.id) is asyncio.current_task():
                del self._followers[c.id]
