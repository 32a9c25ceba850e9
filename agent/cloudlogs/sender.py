"""The log stream to the cloud: a chunked, gzip-encoded NDJSON POST (wire.py).

As the reference: the request is opened when there is something to send, its body a single
gzip member sync-flushed on a throttle (wire.py: once per tick of the followers' grid, every
`logFlushMs`, 1 s by default where the reference flushes after 100 ms); a broken request
is opened again after min(5 s · 2^failures, 300 s) (balena-backend.ts:15-16,117-128), here
with jitter (a random wait between half and all of it) so a fleet that lost its cloud
together does not come back in step.

Where it differs, on purpose: the reference keeps one request open until 60 s without a line
(balena-backend.ts:17,207) and cannot tell which lines a broken request delivered. Here a
request ends after `REQUEST_MAX_S`, or once its lines reach the buffer's memory bound
(`logBufferBytes`: the lines in flight are held until the answer, and never more than that),
and the cloud's answer confirms it; the lines of a request
that fails (refused, cut, no answer) go back to the head of the buffer and are sent again, so
a cut loses nothing; at worst the cloud sees again what it took from the broken request.
Before a batch is written, `on_write` is called (the channel records the containers'
positions there, positions.py), so an agent killed at any point resumes right after the last
line written.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import structlog

from agent import SUPERVISOR_COMPAT_VERSION, __version__
from agent.cloudlogs.buffer import LogBuffer
from agent.cloudlogs.wire import CONTENT_TYPE, FLUSH_S, PATH, Entry, GzipStream
from agent.engine.logloop import sleep_until
from agent.engine.logwire import next_tick

log = structlog.get_logger("agent.cloudlogs")

MIN_COOLDOWN_S = 5.0
MAX_COOLDOWN_S = 300.0
REQUEST_MAX_S = 30.0
MAX_BATCH_BYTES = 256 * 1024  # one gzip flush and one chunk of the body
TICK_MAX_BYTES = 1024 * 1024  # NDJSON sent a tick at most (a backlog never holds the loop long)
ANSWER_TIMEOUT_S = 30.0
ON_TICK_S = 0.03  # woken this soon after a tick: by the lines read on it, flush now
AFTER_TICK_S = 1e-6  # the flush's timer: after the followers' on the same tick, in one wake-up


def cooldown(failures: int, rand: Callable[[], float] = random.random) -> float:
    """The wait before the next attempt after `failures` failed ones in a row."""
    if failures <= 0:
        return 0.0
    full = min(2 ** (failures - 1) * MIN_COOLDOWN_S, MAX_COOLDOWN_S)
    return full * (0.5 + rand() / 2)


@dataclass
class SenderStats:
    lines: int = 0
    raw_bytes: int = 0  # the NDJSON before gzip
    wire_bytes: int = 0  # the request bodies
    requests: int = 0
    failures: int = 0
    resent: int = 0


class Sender:
    def __init__(
        self,
        endpoint: str,
        uuid: str,
        api_key: str,
        buffer: LogBuffer,
        on_write: Callable[[list[Entry]], None],
        flush_s: float = FLUSH_S,
    ) -> None:
        self._flush_s = flush_s
        self._url = endpoint.rstrip("/") + PATH.format(uuid=uuid)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": CONTENT_TYPE,
            "Content-Encoding": "gzip",
            "User-Agent": f"Supervisor/{SUPERVISOR_COMPAT_VERSION} device-agent/{__version__}",
        }
        self._buffer = buffer
        self._on_write = on_write
        self.stats = SenderStats()
        self.connected = False

    async def run(self) -> None:
        failures = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=ANSWER_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self._buffer.ready.wait()
                if not self._buffer.pending:  # woken by a request's deadline (_body)
                    self._buffer.ready.clear()
                    continue
                if await self._request(session):
                    failures = 0
                    continue
                failures += 1
                self.stats.failures += 1
                await asyncio.sleep(cooldown(failures))

    async def _request(self, session: aiohttp.ClientSession) -> bool:
        inflight: list[Entry] = []
        ended: list[bool] = []  # the answer is in: the body must take no more lines
        gz = GzipStream()
        self.stats.requests += 1
        try:
            async with session.post(
                self._url, data=self._body(gz, inflight, ended), headers=self._headers
            ) as resp:
                ok = 200 <= resp.status < 300
                if not ok:
                    text = (await resp.content.read(512)).decode(errors="replace")
                    log.warning("cloud_logs_refused", status=resp.status, answer=text[:200])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("cloud_logs_failed", error=str(exc) or type(exc).__name__)
            ok = False
        finally:
            self.connected = False
            ended.append(True)
        self.stats.raw_bytes += gz.raw_bytes
        self.stats.wire_bytes += gz.wire_bytes
        if ok:
            self.stats.lines += len(inflight)
        else:
            self.stats.resent += len(inflight)
            self._buffer.requeue(inflight)
        return ok

    async def _body(
        self, gz: GzipStream, inflight: list[Entry], ended: list[bool]
    ) -> AsyncIterator[bytes]:
        self.connected = True
        loop = asyncio.get_running_loop()
        buffer = self._buffer
        deadline = loop.time() + REQUEST_MAX_S
        # one timer a request, not one a wait: at the deadline it wakes a wait for lines (the
        # sender's run() then sees that nothing is pending); the loop below ends the request
        expire = loop.call_at(deadline, buffer.ready.set)
        last_slot = None  # the request's first lines go out at once: they waited for a tick
        held = 0  # bytes of `inflight`: at the buffer's memory bound the request ends
        streaming = False  # the last tick had lines: the next one most likely has too
        try:
            while loop.time() < deadline and held < buffer.mem_bytes:
                # the reference's throttled sync flush: at most one per `flush_s` slot, on the
                # grid the followers read on (logloop.py), just after their reads (their timers
                # come first in the same wake-up, and this task's turn after theirs), so their
                # lines go out in the same wake-up; a line put between two ticks (a system
                # line) waits for the next one
                period = self._flush_s
                if streaming:  # straight to the next tick: no wait for `ready`, no loop pass
                    tick = next_tick(loop.time(), period)
                    await sleep_until(tick + AFTER_TICK_S)
                    slot = round(tick / period)
                else:
                    if not buffer.ready.is_set():
                        await buffer.ready.wait()
                        if loop.time() >= deadline:
                            break
                    now = loop.time()
                    slot = math.floor(now / period)
                    if last_slot is not None and (
                        slot == last_slot or now - slot * period > ON_TICK_S
                    ):
                        tick = next_tick(now, period)
                        await sleep_until(tick + AFTER_TICK_S)
                        slot = round(tick / period)
                last_slot = slot
                if ended:  # the answer came while this waited: the request is over, take nothing
                    return
                sent = 0  # all that waits goes out on this tick, up to TICK_MAX_BYTES
                while sent < TICK_MAX_BYTES and held < buffer.mem_bytes:
                    room = min(MAX_BATCH_BYTES, buffer.mem_bytes - held)
                    batch = buffer.take_now(room)
                    if batch is None:  # a segment to read from disk, or a spill under way
                        batch = await buffer.take(room)
                    notice = buffer.take_drop_notice()  # after what was kept (resent too)
                    if notice is not None:
                        batch.append(notice)
                    if ended:  # the answer came during take(): these are the oldest lines
                        # waiting (inflight was requeued first, at the head), so back at the head
                        buffer.requeue(batch)
                        return
                    if not batch:
                        break
                    inflight.extend(batch)
                    self._on_write(batch)
                    chunk = gz.batch([e.line for e in batch])
                    sent += gz.last_raw_bytes
                    held += gz.last_raw_bytes
                    yield chunk
                    if not buffer.ready.is_set():
                        break  # nothing left (take() clears it)
                streaming = sent > 0
        finally:
            expire.cancel()
        yield gz.end()
