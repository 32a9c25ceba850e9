"""The device-tags sender: what it sends, when it retries, what it remembers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from agent.cloud.tags import DeviceTags
from agent.errors import CloudError
from agent.store import Store


class FakeCloud:
    def __init__(self) -> None:
        self.down = False
        self.sent: list[dict[str, str]] = []
        self.rows: list[dict[str, Any]] = []

    async def device_tags(self) -> list[dict[str, Any]]:
        if self.down:
            raise CloudError("connection refused")
        return [dict(r) for r in self.rows]

    async def patch_device_tags(self, tags: dict[str, str]) -> None:
        if self.down:
            raise CloudError("HTTP 503", status=503, retry_after=120.0)
        self.sent.append(dict(tags))
        for key, value in tags.items():
            row = next((r for r in self.rows if r["name"] == key), None)
            if row is None:
                self.rows.append({"id": len(self.rows) + 1, "name": key, "value": value})
            else:
                row["value"] = value


async def test_only_changes_are_sent_and_a_failure_waits_at_least_retry_after(tmp_path):
    cloud, store = FakeCloud(), Store(tmp_path)
    tags = DeviceTags(cloud, store, lambda: 900.0)
    await tags.set({"a": "1", "b": "2"})
    assert await tags.send_once() is None
    assert [t["id"] for t in await tags.view()] == [1, 2]  # known now
    assert cloud.sent == [{"a": "1", "b": "2"}]

    await tags.set({"a": "1", "b": "3"})  # a unchanged
    cloud.down = True
    delay = await tags.send_once()
    assert delay is not None and delay >= 120.0  # the cloud's Retry-After wins
    view = {t["name"]: (t["id"], t["value"]) for t in await tags.view()}
    assert view == {"a": (1, "1"), "b": (2, "3")}  # last known + pending

    cloud.down = False
    assert await tags.send_once() is None
    assert cloud.sent == [{"a": "1", "b": "2"}, {"b": "3"}]
    assert tags.pending() == {}


async def test_pending_tags_survive_a_restart_and_a_good_poll_cuts_the_wait(tmp_path):
    cloud = FakeCloud()
    cloud.down = True
    first = DeviceTags(cloud, Store(tmp_path), lambda: 900.0)
    await first.set({"site": "roof"})
    assert await first.send_once() is not None

    again = DeviceTags(cloud, Store(tmp_path), lambda: 900.0)  # a new process
    assert again.pending() == {"site": "roof"}
    runner = asyncio.create_task(again.run())
    await asyncio.sleep(0.3)  # its first attempt at start fails: it now waits 15 s+
    assert cloud.sent == []
    cloud.down = False
    again.poll_succeeded()  # the cloud answered a poll
    for _ in range(50):
        if cloud.sent:
            break
        await asyncio.sleep(0.05)
    saved = tmp_path / "device-tags.json"
    for _ in range(50):  # then it records that the cloud has them (read without a second
        # Store: opening one clears the temp files of writes in flight, as at a restart)
        if json.loads(saved.read_text()).get("reported") == {"site": "roof"}:
            break
        await asyncio.sleep(0.05)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    assert cloud.sent == [{"site": "roof"}]
    assert DeviceTags(cloud, Store(tmp_path), lambda: 900.0).pending() == {}


async def test_one_patch_at_most_every_spacing(tmp_path, monkeypatch):
    monkeypatch.setattr("agent.cloud.tags.MIN_SPACING_S", 1.0)

    cloud = FakeCloud()
    tags = DeviceTags(cloud, Store(tmp_path), lambda: 900.0)
    runner = asyncio.create_task(tags.run())
    await tags.set({"a": "1"})
    for _ in range(150):
        if cloud.sent:
            break
        await asyncio.sleep(0.02)
    await tags.set({"a": "2"})
    await tags.set({"b": "1"})
    await asyncio.sleep(0.4)
    assert cloud.sent == [{"a": "1"}]  # the next one waits for the spacing
    for _ in range(150):
        if len(cloud.sent) > 1:
            break
        await asyncio.sleep(0.02)
    runner.cancel()
    assert cloud.sent == [{"a": "1"}, {"a": "2", "b": "1"}]  # both changes in one
