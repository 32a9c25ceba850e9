"""Probation and automatic rollback on the in-memory engine: the real apply loop and probation
watch (agent/reconcile/rollback.py) with cloud target documents handed in as the daemon does.
A release whose service exits 1, or stays unhealthy, is rolled back to the release before it,
reported `aborted` with the reason, and not applied again on the next targets until forced; a
first release that fails is left to the engine; the previous release's images stay until the
new one passes; a rollback waits for the update lock; an agent killed mid-rollback converges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.model import UpdateStatus, normalize_image_ref
from agent.reconcile import rollback
from tests.fakes.crash import crash_at
from tests.fakes.engine import FakeEngine
from tests.fakes.rig import DEVICE, Rig

CHECK = {"test": ["CMD", "false"], "interval": "1s", "retries": 1}


@pytest.fixture(autouse=True)
def quick_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollback, "TICK_S", 0.01)


def doc(rel: str, n: int, probation_s: str = "0.2", **composition: Any) -> dict[str, Any]:
    """The cloud's target: app a1, release `rel` (id n) with one service, web:`n`."""
    web = {
        "id": 1,
        "image_id": n,
        "image": f"reg.test/web:{n}",
        "environment": {},
        "labels": {},
        "composition": composition,
    }
    config = {
        "BALENA_DEVICE_AGENT_PROBATION_S": probation_s,
        "BALENA_DEVICE_AGENT_HEALTH_DEADLINE_S": "0.1",
    }
    app = {"id": 1, "name": "demo", "releases": {rel: {"id": n, "services": {"web": web}}}}
    return {DEVICE: {"name": "d", "config": config, "apps": {"a1": app}}}


def web_of(rig: Rig) -> tuple[str, str]:
    """(release, state) of the one web container (empty strings unless there is one)."""
    containers = list(rig.engine.by_id.values())
    if len(containers) != 1:
        return "", ""
    return containers[0].name.rsplit("_", 1)[1], containers[0].state


def passed(rig: Rig, rel: str) -> bool:
    assert rig.rollback is not None
    current = rig.rollback.state["apps"]["a1"]["current"]
    return bool(current["release"] == rel and current["passed"])


def reason(rig: Rig) -> str:
    view = rig.board.app("a1")
    assert view is not None
    return view.reason or ""


async def good_r1(rig: Rig) -> None:
    rig.accept(doc("r1", 1))
    await rig.until(lambda: passed(rig, "r1"), "r1 passed its probation")


async def rolled_back(rig: Rig) -> None:
    """r2 judged, aborted, r1 running again."""
    await rig.until(lambda: rig.status("a1") is UpdateStatus.ABORTED, "r2 aborted")
    await rig.until(lambda: web_of(rig) == ("r1", "running"), "r1 back")
    await rig.converged()
    view = rig.board.app("a1")
    assert view is not None and view.release_uuid == "r2"


async def test_an_exiting_release_is_rolled_back_and_not_reapplied_until_forced(
    tmp_path: Path,
) -> None:
    async with Rig(tmp_path, rollback=True) as rig:
        await good_r1(rig)
        rig.accept(doc("r2", 2, probation_s="5"))
        await rig.until(lambda: web_of(rig) == ("r2", "running"), "r2 running")
        rig.engine.crash("web_2_2_r2", exit_code=1)
        await rolled_back(rig)
        assert reason(rig) == "rolled back: web exited (exit 1)"
        back = next(iter(rig.engine.by_id))
        # the following polls bring the same target: r2 is not started again
        for _ in range(3):
            rig.accept(doc("r2", 2, probation_s="5"))
            await rig.converged()
        assert list(rig.engine.by_id) == [back]
        assert rig.status("a1") is UpdateStatus.ABORTED
        # a forced update applies r2 again (and judges it again)
        assert rig.rollback is not None
        rig.rollback.force()
        await rig.until(lambda: web_of(rig) == ("r2", "running"), "r2 applied again")
        rig.engine.crash("web_2_2_r2", exit_code=1)
        await rolled_back(rig)
    # and after a restart the decision stands
    async with Rig(tmp_path, rig.engine, rollback=True) as again:
        again.accept(doc("r2", 2, probation_s="5"))
        await again.converged()
        assert web_of(again) == ("r1", "running")
        assert again.status("a1") is UpdateStatus.ABORTED


async def test_an_unhealthy_release_is_rolled_back(tmp_path: Path) -> None:
    async with Rig(tmp_path, rollback=True) as rig:
        await good_r1(rig)
        rig.engine.health_on_start("web_2_2_r2", "unhealthy")
        rig.accept(doc("r2", 2, probation_s="5", healthcheck=CHECK))
        await rolled_back(rig)
        assert reason(rig).startswith("rolled back: web not healthy after ")


async def test_a_first_release_that_fails_is_aborted_and_left_to_the_engine(
    tmp_path: Path,
) -> None:
    async with Rig(tmp_path, rollback=True) as rig:
        rig.accept(doc("r1", 1, probation_s="5"))
        await rig.until(lambda: web_of(rig) == ("r1", "running"), "r1 running")
        rig.engine.crash("web_1_1_r1", exit_code=1)
        # the decision wakes the loop: aborted at once, not at a later die event or recheck
        await rig.until(lambda: rig.status("a1") is UpdateStatus.ABORTED, "aborted")
        assert reason(rig).endswith("no previous release to go back to")
        rig.engine.calls.clear()
        rig.accept(doc("r1", 1, probation_s="5"))
        await rig.converged()
        assert web_of(rig) == ("r1", "exited")  # the agent leaves it (the restart policy's)
        assert rig.engine.calls == []


async def test_a_release_that_passes_probation_frees_the_previous_images(tmp_path: Path) -> None:
    web1 = normalize_image_ref("reg.test/web:1")

    def refs(rig: Rig) -> set[str]:
        return {r for refs in rig.engine.images.values() for r in refs}

    async with Rig(tmp_path, rollback=True) as rig:
        await good_r1(rig)
        rig.accept(doc("r2", 2, probation_s="0.3"))
        await rig.until(lambda: rig.status("a1") is UpdateStatus.DONE, "r2 done")
        await rig.converged()
        assert web1 in refs(rig), "r1's image removed during r2's probation"
        await rig.until(lambda: passed(rig, "r2"), "r2 passed")
        await rig.until(lambda: web1 not in refs(rig), "r1's image removed")
        assert normalize_image_ref("reg.test/web:2") in refs(rig)


async def test_a_rollback_waits_for_the_update_lock(tmp_path: Path) -> None:
    async with Rig(tmp_path, rollback=True) as rig:
        await good_r1(rig)
        lock = rig.lock_dir / "1" / "web" / "updates.lock"
        rig.engine.health_on_start("web_2_2_r2", "unhealthy")
        rig.accept(doc("r2", 2, probation_s="5", healthcheck=CHECK))
        await rig.until(lambda: web_of(rig) == ("r2", "running"), "r2 running")
        lock.write_text("")
        await rig.until(lambda: rig.status("a1") is UpdateStatus.ABORTED, "decided")
        await rig.until(lambda: "update lock held by web" in reason(rig), "held")
        assert reason(rig).startswith("rolled back: web not healthy after ")
        assert web_of(rig) == ("r2", "running")  # the lock holds the rollback back
        lock.unlink()
        await rolled_back(rig)


@pytest.mark.parametrize("point", ["rollback_started:1", "step_started:1", "step_done:2"])
async def test_an_agent_killed_mid_rollback_converges(tmp_path: Path, point: str) -> None:
    """The rollback's steps: 1 kill r2's web, 2 start r1's."""
    engine = FakeEngine()
    async with Rig(tmp_path, engine, rollback=True) as first:
        await good_r1(first)
        first.accept(doc("r2", 2, probation_s="5"))
        await first.until(lambda: web_of(first) == ("r2", "running"), "r2 running")
        with crash_at(point, engine) as crash:
            engine.crash("web_2_2_r2", exit_code=1)
            await crash.wait()
            await first.crash()
    engine.revive()
    async with Rig(tmp_path, engine, rollback=True) as second:
        second.accept(doc("r2", 2, probation_s="5"))  # the stored target, handed over again
        await second.until(lambda: web_of(second) == ("r1", "running"), "r1 back")
        await second.converged()
        assert second.status("a1") is UpdateStatus.ABORTED
        assert reason(second).startswith("rolled back: web exited")
