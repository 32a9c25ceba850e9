"""Target-state polling: conditional GETs on the poll interval, with jitter, backoff and an
instant trigger. A successful poll is the device's heartbeat.

The ETag and the last accepted target are persisted together, so a restart without network
still applies the last target, and a restart with network gets a 304 instead of the body.

Every poll's outcome is published (`PollDone`): the connectivity monitor judges the heartbeat
by it, metrics count it, and state a failed write left unsaved (API keys) gets its retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agent.cloud.client import CloudClient
from agent.errors import CloudError, StoreError
from agent.events.bus import Bus
from agent.events.kinds import PollDone
from agent.local.targets import TARGET_KEY
from agent.model.source import TargetSource
from agent.retry import Backoff, poll_jitter
from agent.status.board import StatusBoard
from agent.store import Store
from agent.waits import wait_for

log = structlog.get_logger("agent.poller")


@dataclass(frozen=True)
class SavedTarget:
    etag: str | None
    body: Any


class Poller:
    def __init__(
        self,
        client: CloudClient,
        store: Store,
        status: StatusBoard,
        accept: Callable[[Any, TargetSource], bool],
        interval_s: Callable[[], float],
        rng: random.Random | None = None,
        bus: Bus | None = None,
    ) -> None:
        """`accept(body, source)` hands a fetched target to the agent; it returns False when
        the document is unusable (it is then neither persisted nor its ETag kept)."""
        self._client = client
        self._store = store
        self._status = status
        self._accept = accept
        self._interval_s = interval_s
        self._rng = rng or random.Random()
        self._bus = bus if bus is not None else Bus()
        self._trigger = asyncio.Event()
        self._failures = 0
        self.etag: str | None = None
        self._unsaved: SavedTarget | None = None  # accepted but not persisted yet (full disk)
        self.polls = 0
        self.last_outcome: str | None = None
        self.last_attempt_at: float | None = None  # unix time a poll last started (health)

    def load_saved(self) -> SavedTarget | None:
        saved = self._store.get(TARGET_KEY)
        if not isinstance(saved, dict) or "body" not in saved:
            return None
        self.etag = saved.get("etag")
        return SavedTarget(etag=self.etag, body=saved["body"])

    def trigger(self) -> None:
        """Poll now (the instant-update call)."""
        self._trigger.set()

    @property
    def backoff(self) -> Backoff:
        interval = self._interval_s()
        return Backoff(base_s=min(15.0, interval), cap_s=interval)

    async def poll_once(self) -> float:
        """One poll; returns how long to wait before the next."""
        interval = self._interval_s()
        self.polls += 1
        self.last_attempt_at = time.time()
        try:
            fetch = await self._client.fetch_target(self.etag)
        except CloudError as exc:
            self._failures += 1
            self._status.mark_poll(False, str(exc))
            delay = self.backoff.delay(self._failures, exc.retry_after, self._rng)
            self.last_outcome = f"error: {exc}"
            log.warning(
                "poll_failed",
                error=str(exc),
                status=exc.status,
                attempt=self._failures,
                retry_in_s=round(delay, 1),
            )
            self._bus.publish(PollDone(ok=False, error=str(exc)))
            return delay
        self._failures = 0
        self._status.mark_poll(True)
        if self._unsaved is not None:
            await self._persist(self._unsaved, retry=True)
        if not fetch.changed:
            self.last_outcome = "not modified"
            log.debug("poll_not_modified", etag=fetch.etag)
        else:
            self.last_outcome = "new target"
            log.info("target_fetched", etag=fetch.etag, bytes=fetch.nbytes)
            if self._accept(fetch.body, TargetSource.CLOUD):
                self.etag = fetch.etag
                await self._persist(SavedTarget(fetch.etag, fetch.body), retry=False)
            else:
                self.etag = None
        self._bus.publish(PollDone(ok=True, new_target=fetch.changed))
        return interval + poll_jitter(interval, self._rng)

    async def _persist(self, target: SavedTarget, retry: bool) -> None:
        """Persist an accepted target with its ETag. When that fails (a full data dir) the
        target is still applied, and the write is tried again after each poll until it
        succeeds: a restart must never fall back to an older target than the one applied."""
        try:
            await self._store.put_async(TARGET_KEY, {"etag": target.etag, "body": target.body})
        except StoreError as exc:
            if not retry:
                log.error("target_persist_failed", error=str(exc), retry="after each poll")
            self._unsaved = target
            return
        if retry:
            log.info("target_persisted", etag=target.etag, after="earlier write failed")
        self._unsaved = None

    async def run(self) -> None:
        while True:
            self._trigger.clear()
            delay = await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._trigger.wait(), timeout=delay)
            # a heartbeat persisted at most once per poll keeps restarts honest
            self._status.persist_heartbeat()
