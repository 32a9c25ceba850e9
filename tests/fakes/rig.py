"""The real apply loop (`Reconciler` + `Executor`) on the in-memory engine, in the test's own
event loop: `async with Rig(tmp_path) as rig:` starts the loop and its engine-event watch, and
cancels both on the way out (as a crash would). With `rollback=True` the probation watch
(agent/reconcile/rollback.py) runs beside them, and `accept(body)` hands it a cloud target
document as the daemon does (recorded, a rolled back app's entry substituted, parsed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.engine.compose import DeviceContext
from agent.events.bus import Bus
from agent.model import TargetState, UpdateStatus, parse_target
from agent.reconcile.executor import Executor, ManagedImages
from agent.reconcile.loop import Reconciler
from agent.reconcile.rollback import Rollback
from agent.retry import Backoff
from agent.status.board import StatusBoard
from agent.store import Store
from tests.fakes.engine import FakeEngine

WAIT_S = 5.0  # a bound on any wait: the loop's steps take milliseconds here
DEVICE = "dev1"  # the device uuid of the target documents `accept` takes


class Rig:
    def __init__(
        self,
        tmp_path: Path,
        engine: FakeEngine | None = None,
        max_pull_attempts: int = 5,
        rollback: bool = False,
    ) -> None:
        self.engine = engine or FakeEngine()
        self.lock_dir = tmp_path / "locks"
        self.lock_dir.mkdir(exist_ok=True)
        self.store = Store(tmp_path / "data")
        self.bus = Bus()
        self.board = StatusBoard(self.store, self.bus)
        self.images = ManagedImages(self.store)
        self.override_lock = False  # the fleet's BALENA_SUPERVISOR_OVERRIDE_LOCK
        device = DeviceContext(DEVICE, "raspberrypi4-64", self.lock_dir, "0.1.0")
        self.executor = Executor(self.engine, device, self.images, self.bus)
        self.reconciler = Reconciler(
            engine=self.engine,
            executor=self.executor,
            status=self.board,
            images=self.images,
            lock_dir=self.lock_dir,
            override_lock=lambda: self.override_lock,
            max_pull_attempts=max_pull_attempts,
            bus=self.bus,
        )
        self.reconciler._backoff = Backoff(base_s=0.01, cap_s=0.02)  # retries at once
        self.rollback: Rollback | None = None
        if rollback:
            self.rollback = Rollback(
                self.store,
                self.engine,
                self.board,
                self.reconciler,
                DEVICE,
                retarget=lambda: self.accept(self._rollback().last_body),
                bus=self.bus,
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._crashed = False

    async def __aenter__(self) -> Rig:
        self._tasks = [
            asyncio.create_task(self.reconciler.run()),
            asyncio.create_task(self.reconciler.watch_engine()),
        ]
        if self.rollback is not None:
            self._tasks.append(asyncio.create_task(self.rollback.run()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._crashed:
            await self.images.flush()
            if self.rollback is not None:
                await self.rollback.flush()

    async def crash(self) -> None:
        """The agent dies where it is: its tasks are cancelled mid-step, nothing is flushed.
        A new Rig on the same tmp_path and engine is the agent started again."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks, self._crashed = [], True

    def deploy(self, target: TargetState) -> None:
        self.reconciler.set_target(target)

    def accept(self, body: Any) -> None:
        """A cloud target document, as the daemon takes one: through the rollback record (which
        puts a rolled back app's previous release in its place), parsed, handed to the loop."""
        self.reconciler.set_target(parse_target(self._rollback().adjust(body), DEVICE))

    def _rollback(self) -> Rollback:
        assert self.rollback is not None, "Rig(..., rollback=True)"
        return self.rollback

    async def until(self, check: Callable[[], Any], what: str = "") -> Any:
        """Wait (a few ms, at most WAIT_S) until `check()` is truthy; its value. Fails with
        `what` if the loop ended meanwhile or the bound passed."""
        try:
            async with asyncio.timeout(WAIT_S):
                while not (value := check()):
                    for task in self._tasks:
                        if task.done():
                            raise AssertionError(f"the apply loop ended: {task!r}")
                    await asyncio.sleep(0.001)
        except TimeoutError:
            raise AssertionError(f"not reached in {WAIT_S} s: {what or check}") from None
        return value

    async def converged(self) -> None:
        await self.until(self.reconciler.converged.is_set, "converged")

    def status(self, app_uuid: str) -> UpdateStatus | None:
        view = self.board.app(app_uuid)
        return view.update_status if view is not None else None

    def statuses(self, app_uuid: str, release_uuid: str) -> list[str]:
        """The update statuses the app went through for that release, in order."""
        return [
            t.status.value
            for t in self.board.transitions
            if t.app_uuid == app_uuid and t.release_uuid == release_uuid
        ]
