"""The test-only loop monitor: a callback that blocks the loop is logged with the stack of the
blocking call; awaiting is not blocking; time spent waiting for a CPU on a busy machine is not
counted."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.loopmonitor import (
    ENV,
    LoopMonitor,
    _threads_runqueue_wait,
    excuse,
    install_from_env,
    starved_by_others,
)


async def run_with_monitor(body: Callable[[], Any], threshold_s: float = 0.05) -> list[Any]:
    async def main() -> None:
        monitor = LoopMonitor(threshold_s)
        monitor.install(asyncio.get_running_loop())
        try:
            await asyncio.sleep(0)  # the callbacks from here on are watched
            await body()
            await asyncio.sleep(0.02)
        finally:
            monitor.uninstall()

    with capture_logs() as logs:
        await main()
    return [e for e in logs if e["event"] == "slow_callback"]


def reads_a_slow_device() -> None:
    time.sleep(0.15)  # stands for a blocking read


def blocks_for(seconds: float) -> None:
    time.sleep(seconds)


def burns_cpu(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def test_a_blocking_call_is_reported_with_its_stack():
    async def handler() -> None:
        await asyncio.sleep(0)
        reads_a_slow_device()

    slow = await run_with_monitor(handler)
    assert len(slow) == 1, slow
    event = slow[0]
    assert "reads_a_slow_device" in event["stack"].splitlines()[-1]  # the innermost frame
    assert "test_a_blocking_call_is_reported_with_its_stack.<locals>.handler" in event["stack"]
    assert "base_events.py" not in event["stack"]  # the loop's own frames are left out
    assert event["blocking_ms"] > 50 and event["excused"] is None


async def test_the_loop_stays_out_of_debug_mode():
    """Debug mode would make asyncio and aiohttp record a stack for every future and request:
    work the agent never does on a device, and the monitor's own stalls on a busy machine."""

    async def main() -> bool:
        monitor = LoopMonitor(0.05)
        monitor.install(asyncio.get_running_loop())
        try:
            return asyncio.get_running_loop().get_debug()
        finally:
            monitor.uninstall()

    assert (await main()) is False


async def test_awaiting_is_not_blocking():
    async def handler() -> None:
        for _ in range(5):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(time.sleep, 0.2)  # blocking, but in a thread

    assert (await run_with_monitor(handler)) == []


async def test_a_long_computation_blocks_too():
    async def handler() -> None:
        burns_cpu(0.12)

    slow = await run_with_monitor(handler)
    assert len(slow) == 1 and "burns_cpu" in slow[0]["stack"]


@pytest.fixture
def cpu_hog() -> Iterator[int]:
    """A busy process pinned to the CPU this test pins itself to."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    before = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(hog.pid, {cpu})
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)
        hog.kill()
        hog.wait()


async def test_waiting_for_a_cpu_is_not_counted(cpu_hog):
    """30 ms of work sharing one CPU with a busy process takes ~60 ms of wall time: over the
    50 ms threshold by the clock, but the loop was not blocked by the callback."""
    walls: list[float] = []

    async def handler() -> None:
        for _ in range(3):
            start = time.perf_counter()
            burns_cpu(0.03)
            walls.append(time.perf_counter() - start)
            await asyncio.sleep(0)

    slow = await run_with_monitor(handler)
    assert max(walls) > 0.05, f"the hog did not slow the callback down: {walls}"
    assert slow == [], slow


async def test_off_unless_asked(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)

    async def main() -> Any:
        return install_from_env(asyncio.get_running_loop())

    assert (await main()) is None


ASYNCIO = "/usr/lib/python3.11/asyncio"


def test_what_is_excused():
    def stack(*frames: tuple[str, str]) -> str:
        return "\n".join(f'  File "{path}", line 1, in {name}' for path, name in frames)

    agent = ("/work/agent/store.py", "Store.put")
    assert excuse(stack(agent)) is None
    hook = ("/work/testbed/testhooks.py", "block_the_loop")
    assert excuse(stack(agent, hook)) == "deliberate"
    debug = stack(
        agent, (f"{ASYNCIO}/base_events.py", "create_future"), ("/x/traceback.py", "extract_stack")
    )
    assert excuse(debug) == "debug_overhead"
    aiohttp_debug = stack(
        agent,
        ("/v/aiohttp/client_reqrep.py", "ClientRequest.__init__"),
        ("/x/traceback.py", "extract_stack"),
        ("/x/traceback.py", "StackSummary.extract"),
        ("/x/linecache.py", "checkcache"),
    )
    assert excuse(aiohttp_debug) == "debug_overhead"
    send = stack(agent, (f"{ASYNCIO}/selector_events.py", "_SelectorSocketTransport.write"))
    assert excuse(send) == "loop_internal"
    start = stack(
        agent,
        ("/x/threading.py", "Thread.start"),
        ("/x/threading.py", "Event.wait"),
        ("/x/threading.py", "Condition.wait"),
    )
    assert excuse(start) == "thread_start"
    joined = stack(agent, ("/x/threading.py", "Thread.join"), ("/x/threading.py", "Condition.wait"))
    assert excuse(joined) is None  # waiting for a thread to finish is blocking


async def test_an_unsampled_stall_fails_only_when_long(monkeypatch):
    """A stall no sample caught (the sampler thread starved, as on a busy VM) is excused below
    UNSAMPLED_FACTOR × the threshold; a longer one is still a failure."""
    monkeypatch.setattr("agent.loopmonitor.TICK_S", 30.0)  # a sampler that never gets to run

    async def short() -> None:
        blocks_for(0.1)

    async def long() -> None:
        blocks_for(0.3)

    brief = await run_with_monitor(short)
    assert len(brief) == 1 and brief[0]["excused"] == "unsampled", brief
    slow = await run_with_monitor(long)
    assert len(slow) == 1 and slow[0]["excused"] is None, slow
    assert slow[0]["stack"].startswith("(not sampled")


def test_a_gil_holder_waiting_for_a_cpu_is_the_machine_not_the_agent():
    # the longest run-queue delay any other thread gathered meanwhile; threads that ended
    # (absent from the second reading) or started (absent from the first) count for nothing
    before = {11: 1.0, 12: 5.0, 13: 0.5}
    after = {11: 1.07, 12: 5.02, 14: 9.0}
    assert starved_by_others(before, after) == pytest.approx(0.07)
    assert starved_by_others({}, after) == 0.0
    # read from /proc for this process's threads, the skipped ones left out
    mine = threading.get_native_id()
    waits = _threads_runqueue_wait(set())
    assert mine in waits and waits[mine] >= 0
    assert mine not in _threads_runqueue_wait({mine})
