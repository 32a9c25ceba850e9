"""agent.waits.wait_for: a cancel that arrives as the awaited event is set stops the task
(asyncio.wait_for on Python 3.11 returns instead, and a loop cancelled at shutdown the moment
it was woken went on running)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from agent.waits import wait_for


async def _loop(wake: asyncio.Event, rounds: list[int]) -> None:
    while True:
        rounds.append(1)
        with contextlib.suppress(TimeoutError):
            await wait_for(wake.wait(), 10)
        wake.clear()


async def test_a_cancel_as_the_event_is_set_ends_the_task() -> None:
    wake = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(_loop(wake, rounds))
    await asyncio.sleep(0)  # the task waits on the event
    wake.set()  # woken ...
    task.cancel()  # ... and stopped in the same turn of the loop
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), 2)
    assert task.cancelled() and rounds == [1]


async def test_the_result_and_the_timeout() -> None:
    async def answer() -> int:
        return 42

    assert await wait_for(answer(), 1) == 42
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.sleep(5), 0.01)
