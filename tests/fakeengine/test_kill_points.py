"""The agent killed at each point of a two-service update (each pull, each apply step, the
hand-over wait, the state writes, each update-status change) and started again converges on the
new release: one container per service, all of the new release and running, the named volume
kept, `done` once and never before the engine was there. The fake-tier twin of
tests/faults/test_kill_points.py, whose real SIGKILLs keep a few of these points."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.events.kinds import StatusChanged
from agent.model import UpdateStatus
from tests.fakes.crash import crash_at
from tests.fakes.engine import FakeContainer, FakeEngine
from tests.fakes.releases import main_aux
from tests.fakes.rig import Rig

R1, R2 = main_aux("r1", 1, "1"), main_aux("r2", 2, "2")

# In the order the update reaches them (r1 → r2: pull both images, kill main, start the new aux
# beside the old one, start main, wait for aux's hand-over, kill the old aux, done).
KILL_POINTS = [
    "update_status_changed:1",  # downloading
    "pull_started:1",
    "pull_started:2",
    "pull_done:1",
    "state_write.images:1",  # the record of images the agent pulled
    "pull_done:2",
    "update_status_changed:2",  # downloaded
    "update_status_changed:3",  # applying changes
    "state_write.status:2",
    "step_started:1",  # kill the old main
    "step_done:1",
    "step_started:2",  # start the new aux beside the old one
    "step_done:2",
    "apply_waiting:1",  # aux hands over
    "step_started:3",  # start the new main
    "step_done:3",
    "step_started:4",  # kill the old aux once the new one said handover-complete
    "update_status_changed:4",  # done, not yet persisted
]


def engine_for(lock_dir: Path) -> FakeEngine:
    """aux writes handover-complete a moment after it starts, as the fault suite's does."""
    engine = FakeEngine()

    def hand_over(c: FakeContainer) -> None:
        signal = lock_dir / "1" / "aux" / "handover-complete"
        asyncio.get_running_loop().call_later(0.02, signal.write_text, "")

    engine.on_start("aux_", hand_over)
    return engine


@pytest.mark.parametrize("point", KILL_POINTS)
async def test_an_agent_killed_at_a_point_of_an_update_converges_when_started_again(
    tmp_path, point
) -> None:
    engine = engine_for(tmp_path / "locks")

    async with Rig(tmp_path, engine) as first:
        first.deploy(R1)
        await first.converged()
        volumes = dict(engine.volumes)
        with crash_at(point, engine) as crash:
            first.deploy(R2)
            await crash.wait()
            await first.crash()
        early = [s for s in first.statuses("a1", "r2") if s == "done"]
        assert not early or point == "update_status_changed:4", f"done before {point}"
    engine.revive()

    async with Rig(tmp_path, engine) as second:
        done_seen: list[dict[str, tuple[str, str]]] = []

        def on_publish(_: StatusChanged) -> None:  # the engine when `done` is first shown
            if second.status("a1") is UpdateStatus.DONE and not done_seen:
                done_seen.append({c.name: (c.state, c.image) for c in engine.by_id.values()})

        second.bus.subscribe(StatusChanged, on_publish)
        second.deploy(R2)
        await second.converged()
        assert engine.running() == {"main": "r2", "aux": "r2"}
        assert sorted(c.name for c in engine.by_id.values()) == ["aux_22_2_r2", "main_21_2_r2"]
        assert engine.volumes == volumes  # the named volume is the one r1 used
        assert second.status("a1") is UpdateStatus.DONE
        assert second.statuses("a1", "r2").count("done") == 1
        assert done_seen and all(s == "running" for s, _ in done_seen[0].values())
        assert sorted(done_seen[0]) == ["aux_22_2_r2", "main_21_2_r2"]
