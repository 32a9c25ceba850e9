"""Long-lived tasks that never silently die (uvicorn-style supervision).

`Supervisor.spawn(name, factory)` runs `factory()` in a task named `name`. When the coroutine
ends — an exception of any kind, or a return, which a long-lived task must never do — the end is
logged (`task_crashed`, with the stack) and the coroutine is started again after an exponential
backoff with jitter (`task_restart_scheduled`, then `task_restarted`).

Giving up: a task that ended `RestartPolicy.max_crashes` times within `window_s` (5 ends in 10
minutes; with backoff 1, 2, 4, 8 s that is about 30 s of a task that crashes at once) is not
started again (`task_given_up`). From then on `healthy` is False: the agent's watchdog pings stop,
so systemd (WatchdogSec) restarts the whole agent, and `GET /v1/healthy` says why. A crash now
and then (less than 5 in 10 minutes) is retried for ever.

`drain` cancels every task and waits for them (bounded), on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.retry import Backoff

log = structlog.get_logger("agent.supervise")

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class RestartPolicy:
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=1.0, cap_s=60.0))
    max_crashes: int = 5  # this many ends within window_s: give up
    window_s: float = 600.0


class Supervisor:
    def __init__(
        self,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._clock = clock
        self._sleep = sleep
        self._runners: dict[str, asyncio.Task[None]] = {}
        self.given_up: dict[str, str] = {}  # task name -> why it is not restarted
        self.restarts: dict[str, int] = {}
        # told (with the task's name) when a task is given up
        self.on_give_up: list[Callable[[str], None]] = []

    @property
    def healthy(self) -> bool:
        """False once any task was given up: the agent must be restarted."""
        return not self.given_up

    def names(self) -> set[str]:
        """The supervised tasks that are kept alive (running or waiting for their restart)."""
        return {name for name, task in self._runners.items() if not task.done()}

    def spawn(self, name: str, factory: TaskFactory) -> None:
        if name in self.names():
            raise ValueError(f"task {name!r} is already supervised")
        self._runners[name] = asyncio.create_task(self._keep(name, factory), name=name)

    async def _keep(self, name: str, factory: TaskFactory) -> None:
        ends: deque[float] = deque()
        while True:
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("task_crashed", task=name, error=repr(exc), exc_info=exc)
            else:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise asyncio.CancelledError  # it swallowed our cancel and returned
                log.error("task_crashed", task=name, error="returned (it must never end)")
            now = self._clock()
            ends.append(now)
            while ends and now - ends[0] > self.policy.window_s:
                ends.popleft()
            if len(ends) >= self.policy.max_crashes:
                reason = f"ended {len(ends)} times within {self.policy.window_s:.0f}s"
                self.given_up[name] = reason
                log.critical("task_given_up", task=name, reason=reason)
                for listener in list(self.on_give_up):
                    with contextlib.suppress(Exception):
                        listener(name)
                return
            delay = self.policy.backoff.delay(len(ends))
            log.warning(
                "task_restart_scheduled", task=name, attempt=len(ends), retry_in_s=round(delay, 2)
            )
            await self._sleep(delay)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.info("task_restarted", task=name, restarts=self.restarts[name])

    async def drain(self, timeout_s: float) -> None:
        """Cancel every task and wait up to `timeout_s` for them to finish."""
        tasks = [t for t in self._runners.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                log.warning("task_not_drained", task=task.get_name())
