"""The probation watch's cost (agent/reconcile/rollback.py): with nothing on probation it sleeps
until a release is recorded; a steady release on probation costs one container listing a tick,
and a container is inspected again only when the list or the engine's events show a change."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.model.current import ContainerState, ContainerStatus
from agent.reconcile.probation import Thresholds
from agent.reconcile.rollback import Rollback
from agent.store import Store
from tests.unit.reconcile.factories import ROLLBACK_DEVICE as DEV
from tests.unit.reconcile.factories import container
from tests.unit.reconcile.factories import rollback_body as body


class Engine:
    def __init__(self, container: ContainerState) -> None:
        self.container = container
        self.dies = 0
        self.lists = 0
        self.inspects = 0

    async def containers(self) -> tuple[ContainerState, ...]:
        self.lists += 1
        return (self.container,)

    async def inspect_container(self, container_id: str) -> dict[str, Any]:
        self.inspects += 1
        return {
            "State": {"Status": self.container.status.value, "StartedAt": "2026-12-04T00:00:00Z"},
            "RestartCount": self.dies,
        }

    def die_count(self, container_id: str) -> int:
        return self.dies

    def last_exit_code(self, container_id: str) -> int | None:
        return 1 if self.dies else None


def web(status: ContainerStatus = ContainerStatus.RUNNING) -> ContainerState:
    return container("c1", "a1", "web", release_uuid="r1", release_id=1, status=status)


def controller(root: Path, engine: Engine) -> Rollback:
    return Rollback(
        Store(root),
        engine=engine,
        status=SimpleNamespace(app=lambda uuid: None),  # type: ignore[arg-type]
        reconciler=SimpleNamespace(target=None, wake=lambda: None),  # type: ignore[arg-type]
        device_uuid=DEV,
        retarget=lambda: None,
    )


SERVICES = {"web": SimpleNamespace(running=True, labels={})}


async def test_a_steady_container_is_listed_each_tick_and_inspected_again_only_on_a_change(
    tmp_path: Path,
) -> None:
    engine = Engine(web())
    rb = controller(tmp_path, engine)
    rb.thresholds = Thresholds()

    async def ticks(n: int) -> list[Any]:
        return [await rb._observe("a1", "r1", SERVICES) for _ in range(n)]

    first = await ticks(5)
    assert engine.lists == 5 and engine.inspects == 1
    assert all(obs == first[0] for obs in first) and first[0][0].restart_count == 0

    engine.dies = 1  # the engine restarted it: a `die` event, the list looks the same
    (after,) = await ticks(1)
    assert engine.inspects == 2 and after[0].restart_count == 1 and after[0].exit_code == 1

    engine.container = dataclasses.replace(engine.container, status=ContainerStatus.EXITED)
    (stopped,) = await ticks(1)
    assert engine.inspects == 3 and stopped[0].status == "exited"


async def test_with_nothing_on_probation_the_watch_sleeps_until_a_release_is_recorded(
    tmp_path: Path,
) -> None:
    engine = Engine(web())
    rb = controller(tmp_path, engine)
    checks: list[str] = []

    async def check() -> None:
        checks.append("check")

    rb._check = check  # type: ignore[method-assign]

    task = asyncio.create_task(rb.run())
    await asyncio.sleep(2.5)  # no app recorded: nothing to watch
    idle = len(checks)
    rb.adjust(body("r1", "web:1"))  # a release on probation: ticks every second
    await asyncio.sleep(2.5)
    task.cancel()
    assert idle == 0 and len(checks) >= 2
