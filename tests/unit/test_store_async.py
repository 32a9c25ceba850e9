"""Store writes off the event loop: `put_async` keeps the order of the calls, `LatestWriter`
coalesces a burst into a few writes of the latest value, and neither touches the disk on the
loop's thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from agent.errors import StoreError
from agent.store import LatestWriter, Store


class Recording(Store):
    """Records which thread each write ran in; fails while `full`."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.threads: list[str] = []
        self.full = False

    def put(self, key: str, value: Any) -> None:
        self.threads.append(threading.current_thread().name)
        if self.full:
            raise StoreError("No space left on device")
        super().put(key, value)


async def test_put_async_writes_in_a_thread_in_call_order(tmp_path):
    store = Recording(tmp_path)

    await asyncio.gather(*(store.put_async("images", [f"sha256:{i}"]) for i in range(20)))
    assert store.get("images") == ["sha256:19"]  # the last call's value, whatever the threads did
    assert len(store.threads) == 20 and "MainThread" not in store.threads


async def test_latest_writer_coalesces_and_flushes_the_latest_value(tmp_path):
    store = Recording(tmp_path)
    errors: list[StoreError] = []
    writer = LatestWriter(store, "status", errors.append)

    for i in range(100):
        writer.write({"n": i})
        if i % 10 == 0:
            await asyncio.sleep(0)
    await writer.flush()
    assert store.get("status") == {"n": 99}
    assert 1 <= len(store.threads) < 100 and "MainThread" not in store.threads
    assert errors == []


def test_latest_writer_writes_in_place_without_a_loop(tmp_path):
    store = Recording(tmp_path)
    errors: list[StoreError] = []
    writer = LatestWriter(store, "images", errors.append)
    writer.write(["a"])  # no running loop: written at once, in this thread
    assert store.get("images") == ["a"] and store.threads == ["MainThread"] and errors == []


async def test_latest_writer_reports_a_failed_write(tmp_path):
    store = Recording(tmp_path)
    errors: list[StoreError] = []
    writer = LatestWriter(store, "images", errors.append)
    store.put("images", ["a"])
    store.full = True
    writer.write(["b"])
    await writer.flush()
    assert len(errors) == 1 and store.get("images") == ["a"]  # the old value, intact
