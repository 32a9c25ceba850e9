"""The device-info cache behind reports reads /proc, /sys and the data dir in a worker thread,
never on the event loop: a stale value is served while the new one is read."""

from __future__ import annotations

import asyncio
import threading

from agent.device.cached import Cached


async def test_reads_happen_off_the_loop_and_a_stale_value_is_served_meanwhile():
    threads: list[str] = []
    count = [0]

    def read() -> dict[str, int]:
        threads.append(threading.current_thread().name)
        count[0] += 1
        return {"n": count[0]}

    cache = Cached(0.5, read)

    async def scenario() -> list[dict[str, int]]:
        await cache.prime()
        seen = [cache()]
        await asyncio.sleep(0.6)  # stale now
        seen.append(cache())  # the old value, the new one being read in a thread
        await asyncio.sleep(0.05)
        seen.append(cache())
        return seen

    assert (await scenario()) == [{"n": 1}, {"n": 1}, {"n": 2}]
    assert len(threads) == 2 and "MainThread" not in threads


def test_from_a_worker_thread_it_reads_in_place():
    cache = Cached(60.0, lambda: {"os": "x"})
    out: list[dict[str, str]] = []
    worker = threading.Thread(target=lambda: out.append(cache()))
    worker.start()
    worker.join()
    assert out == [{"os": "x"}]
