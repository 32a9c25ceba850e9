"""Supervised tasks: a crash or a return is logged with its stack and restarted with backoff;
a task that keeps crashing is given up, and then the watchdog pings stop."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from agent.retry import Backoff
from agent.sdnotify import watchdog_loop
from agent.supervise import RestartPolicy, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Flaky:
    """Raises (or returns) the first `bad` times it is started, then runs until cancelled."""

    def __init__(self, bad: int, returns: bool = False) -> None:
        self.bad = bad
        self.returns = returns
        self.starts = 0
        self.running = asyncio.Event()

    async def __call__(self) -> None:
        self.starts += 1
        if self.starts <= self.bad:
            if self.returns:
                return
            raise RuntimeError(f"crash {self.starts}")
        self.running.set()
        await asyncio.Event().wait()


class Pings:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def send(self, *lines: str) -> bool:
        self.lines.extend(lines)
        return True


POLICY = RestartPolicy(backoff=Backoff(base_s=1.0, cap_s=60.0), max_crashes=5, window_s=600.0)


async def test_a_crashing_task_is_logged_with_its_stack_and_restarted_with_backoff():
    clock = Clock()
    flaky = Flaky(bad=3)

    async def scenario() -> Supervisor:
        sup = Supervisor(POLICY, clock=clock, sleep=clock.sleep)
        sup.spawn("reconcile", flaky)
        await asyncio.wait_for(flaky.running.wait(), 5)
        assert sup.names() == {"reconcile"} and sup.healthy
        await sup.drain(1.0)
        assert sup.names() == set()
        return sup

    with capture_logs() as logs:
        sup = await scenario()
    crashed = [e for e in logs if e["event"] == "task_crashed"]
    assert [e["error"] for e in crashed] == [f"RuntimeError('crash {i}')" for i in (1, 2, 3)]
    assert all(isinstance(e["exc_info"], RuntimeError) for e in crashed)  # the stack
    assert flaky.starts == 4 and sup.restarts == {"reconcile": 3}
    # exponential backoff with jitter from the upper half: 0.5-1, 1-2, 2-4 s
    assert len(clock.sleeps) == 3
    for delay, cap in zip(clock.sleeps, (1.0, 2.0, 4.0), strict=True):
        assert cap / 2 <= delay <= cap


async def test_a_task_that_returns_is_restarted_too():
    clock = Clock()
    flaky = Flaky(bad=1, returns=True)

    async def scenario() -> None:
        sup = Supervisor(POLICY, clock=clock, sleep=clock.sleep)
        sup.spawn("poll", flaky)
        await asyncio.wait_for(flaky.running.wait(), 5)
        await sup.drain(1.0)

    with capture_logs() as logs:
        await scenario()
    assert [e["error"] for e in logs if e["event"] == "task_crashed"] == [
        "returned (it must never end)"
    ]
    assert flaky.starts == 2


async def test_crashes_spread_out_beyond_the_window_are_retried_for_ever():
    clock = Clock()
    policy = RestartPolicy(backoff=Backoff(base_s=1.0, cap_s=1.0), max_crashes=3, window_s=10.0)
    starts = 0

    async def crashes_every_20s() -> None:
        nonlocal starts
        starts += 1
        if starts > 8:
            await asyncio.Event().wait()
        clock.now += 20.0  # ran for 20 s, then crashed
        raise OSError("gone")

    async def scenario() -> Supervisor:
        sup = Supervisor(policy, clock=clock, sleep=clock.sleep)
        sup.spawn("report", crashes_every_20s)
        while starts <= 8:  # noqa: ASYNC110
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert sup.names() == {"report"}
        await sup.drain(1.0)
        return sup

    with capture_logs():
        sup = await scenario()
    assert sup.healthy and sup.restarts["report"] == 8


async def test_a_task_that_keeps_crashing_is_given_up_and_the_watchdog_pings_stop():
    clock = Clock()
    flaky = Flaky(bad=1000)
    pings = Pings()
    given_up: list[str] = []

    async def scenario() -> Supervisor:
        sup = Supervisor(POLICY, clock=clock, sleep=clock.sleep)
        sup.on_give_up.append(given_up.append)
        pinger = asyncio.create_task(watchdog_loop(pings, 0.01, alive=lambda: sup.healthy))
        await asyncio.sleep(0.05)
        before = pings.lines.count("WATCHDOG=1")
        sup.spawn("reconcile", flaky)
        async with asyncio.timeout(5):
            while sup.healthy:  # noqa: ASYNC110
                await asyncio.sleep(0)
        stopped_at = pings.lines.count("WATCHDOG=1")
        await asyncio.sleep(0.1)  # ten periods: no ping any more
        assert pings.lines.count("WATCHDOG=1") == stopped_at
        assert before >= 3
        assert "reconcile" not in sup.names()  # not restarted any more
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
        return sup

    with capture_logs() as logs:
        sup = await scenario()
    assert flaky.starts == POLICY.max_crashes
    assert given_up == ["reconcile"]
    assert sup.given_up == {"reconcile": "ended 5 times within 600s"}
    events = [e["event"] for e in logs]
    assert events.count("task_crashed") == 5 and "task_given_up" in events
    assert "watchdog_pings_stopped" in events


async def test_a_name_is_supervised_once():
    sup = Supervisor(POLICY)
    sup.spawn("poll", Flaky(bad=0))
    with pytest.raises(ValueError, match="already supervised"):
        sup.spawn("poll", Flaky(bad=0))
    await sup.drain(1.0)


async def test_drain_cancels_and_waits():
    finished: list[str] = []

    async def tidy() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finished.append("tidy")

    async def scenario() -> None:
        sup = Supervisor(POLICY)
        sup.spawn("connectivity", tidy)
        await asyncio.sleep(0)
        await sup.drain(1.0)
        assert sup.names() == set()

    with capture_logs() as logs:
        await scenario()
    assert finished == ["tidy"]
    assert not [e for e in logs if e["event"] == "task_crashed"]  # a cancel is no crash


def test_v1_healthy_names_the_task_given_up_or_not_running():
    from types import SimpleNamespace

    from agent.healthcheck import HealthCheck

    sup = Supervisor(POLICY)
    quiet = SimpleNamespace(last_attempt_at=None, last_pass_at=None, busy_since=None, target=None)
    health = HealthCheck(sup, quiet, quiet, SimpleNamespace(apps={}), lambda: 900.0, 30.0)
    assert health() == (False, "not running: poll, reconcile, report")
    sup.given_up["reconcile"] = "ended 5 times within 600s"
    assert health() == (
        False,
        "task given up: reconcile ended 5 times within 600s",
    )
