"""Device tags an app sets through `PATCH /v2/device/tags`, sent to the cloud as the reference
does: `PATCH /device/v3/tags` with `{uuid: {tagKey: value}}`, only the tags that differ from
what the cloud last acknowledged.

The wanted tags (`target`) and the acknowledged ones (`reported`) are persisted together in
the store (`device-tags`), so a tag set while the cloud can't be reached is sent after a
restart too. At most one PATCH goes out every 10 s; failures are retried with backoff and
jitter (at least 15 s, at most the poll interval), both as the reference's; a successful poll
(the cloud is back) cuts the wait short.

`GET /v2/device/tags` answers from the cloud with the pending tags laid over it; when the
cloud can't be reached, from the last answer it gave plus what was sent and what is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from agent.errors import CloudError, StoreError
from agent.retry import Backoff
from agent.store import Store
from agent.waits import wait_for

log = structlog.get_logger("agent.tags")

STORE_KEY = "device-tags"
MIN_RETRY_S = 15.0  # the reference's minimum delay between failed attempts
COALESCE_S = 0.1  # tags set together (one burst of requests) go in one PATCH
MIN_SPACING_S = 10.0  # at most one PATCH every 10 s, as the reference's maxReportFrequency


class TagsClient(Protocol):
    async def device_tags(self) -> list[dict[str, Any]]: ...

    async def patch_device_tags(self, tags: dict[str, str]) -> None: ...


class DeviceTags:
    def __init__(
        self,
        client: TagsClient,
        store: Store,
        max_retry_s: Callable[[], float],
        retry_base_s: float = MIN_RETRY_S,
    ) -> None:
        self._client = client
        self._store = store
        self._max_retry_s = max_retry_s
        self._retry_base_s = retry_base_s
        saved = store.get(STORE_KEY, {}) or {}
        self._target: dict[str, str] = dict(saved.get("target") or {})
        self._reported: dict[str, str] = dict(saved.get("reported") or {})
        self._known: list[dict[str, Any]] = list(saved.get("known") or [])
        self._wake = asyncio.Event()
        self._failures = 0
        self._last_sent: float | None = None  # time.monotonic() of the last accepted PATCH

    # --- the API's side -----------------------------------------------------------------------

    def pending(self) -> dict[str, str]:
        """Tags set and not yet acknowledged by the cloud."""
        return {k: v for k, v in self._target.items() if self._reported.get(k) != v}

    async def set(self, tags: dict[str, str]) -> None:
        """Schedule `tags` (key → value) for the cloud and persist the schedule (StoreError
        when it can't be written)."""
        changed = False
        for key, value in tags.items():
            if self._target.get(key) == value:
                continue
            if key not in self._target and self._reported.get(key) == value:
                continue  # already what the cloud has
            self._target[key] = value
            changed = True
        if changed:
            await self._persist()
            log.info("device_tags_scheduled", tags=sorted(self.pending()))
            self._wake.set()

    async def view(self) -> list[dict[str, Any]]:
        """`[{id, name, value}]`: the cloud's tags (or the last known ones, when it can't be
        reached) with what was set here laid over them (`id` null for a tag the cloud has
        not created yet)."""
        overlay: dict[str, str]
        try:
            rows = await self._client.device_tags()
        except CloudError as exc:
            log.warning("device_tags_from_cache", error=str(exc))
            rows = self._known
            overlay = {**self._reported, **self._target}
        else:
            if rows != self._known:
                self._known = rows
                with contextlib.suppress(StoreError):
                    await self._persist()
            overlay = self.pending()
        out = [dict(row) for row in rows]
        for key, value in overlay.items():
            row = next((r for r in out if r.get("name") == key), None)
            if row is None:
                out.append({"id": None, "name": key, "value": value})
            else:
                row["value"] = value
        return out

    # --- the sender ---------------------------------------------------------------------------

    def poll_succeeded(self) -> None:
        """The cloud answered a poll: a sender waiting after a failure tries again now."""
        if self._failures and self.pending():
            self._wake.set()

    async def run(self) -> None:
        if self.pending():
            log.info("device_tags_pending_at_start", tags=sorted(self.pending()))
            self._wake.set()
        while True:
            await self._wake.wait()
            left = 0.0
            if self._last_sent is not None:
                left = MIN_SPACING_S - (time.monotonic() - self._last_sent)
            await asyncio.sleep(max(COALESCE_S, left))
            self._wake.clear()
            delay = await self.send_once()
            if delay is not None:
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._wake.wait(), timeout=delay)
                self._wake.set()  # retry now (woken) or after the delay

    async def send_once(self) -> float | None:
        """Send the pending tags; None when done (or nothing to do), else seconds to wait."""
        diff = self.pending()
        if not diff:
            return None
        try:
            await self._client.patch_device_tags(diff)
        except CloudError as exc:
            self._failures += 1
            backoff = Backoff(self._retry_base_s, max(self._retry_base_s, self._max_retry_s()))
            delay = backoff.delay(self._failures, exc.retry_after)
            log.warning(
                "device_tags_report_failed",
                error=str(exc),
                attempt=self._failures,
                retry_in_s=round(delay, 1),
            )
            return delay
        self._failures = 0
        self._last_sent = time.monotonic()
        for key, value in diff.items():
            self._reported[key] = value
            if self._target.get(key) == value:
                del self._target[key]
        try:
            await self._persist()
        except StoreError as exc:  # sent; only the record of it is lost (sent again later)
            log.error("device_tags_persist_failed", error=str(exc))
        log.info("device_tags_reported", tags=sorted(diff))
        return None if not self.pending() else 0.0

    async def _persist(self) -> None:
        await self._store.put_async(
            STORE_KEY, {"target": self._target, "reported": self._reported, "known": self._known}
        )
