"""Faults on the in-memory engine, driving the real apply loop: the engine going away mid-update,
the agent killed at a point of an update and started again (crash = its tasks cancelled, the
store reopened), and a hand-over. Milliseconds each."""

from __future__ import annotations

import asyncio

import pytest

from agent.model import TargetState, UpdateStatus, normalize_image_ref
from tests.fakes.engine import FakeEngine
from tests.fakes.releases import R2, on_r1, r2_with_web_pull_held
from tests.fakes.rig import Rig
from tests.unit.reconcile.factories import app, release, svc, target


async def test_the_engine_going_away_mid_update_fails_passes_until_it_is_back(tmp_path) -> None:
    async with Rig(tmp_path) as rig:
        release_web = await r2_with_web_pull_held(rig)
        rig.engine.die()
        error = await rig.until(lambda: rig.reconciler.last_error, "an engine error")
        assert "engine unavailable" in error
        await asyncio.sleep(0.05)  # passes keep failing (backed off), the loop goes on
        assert rig.status("a1") is UpdateStatus.DOWNLOADING
        assert not [c for c in rig.engine.calls if c[0] in {"kill", "stop", "create"}]
        release_web.set()
        rig.engine.revive()
        await rig.converged()
        assert rig.reconciler.last_error is None
        assert rig.engine.running() == {"db": "r2", "web": "r2"}


# (action, container name prefix) the agent is killed at, the change not made
KILL_POINTS = [
    ("kill", "web_1_1_r1"),  # the old db removed, the old web not yet
    ("create", "db_1_2_r2"),  # both old ones removed, nothing new
    ("start", "web_1_2_r2"),  # the new web created, not started
    ("kill", "db_1_1_r1"),  # the images pulled, nothing changed yet
]


@pytest.mark.parametrize(("action", "name"), KILL_POINTS)
async def test_an_agent_killed_mid_update_converges_when_started_again(
    tmp_path, action, name
) -> None:
    engine = FakeEngine()

    async with Rig(tmp_path, engine) as first:
        await on_r1(first)
        gate = engine.gate(action, name)
        first.deploy(R2)
        await first.until(gate.reached.is_set, f"{action} {name}")
        await first.crash()
    async with Rig(tmp_path, engine) as second:  # the same store, lock dir and engine
        second.deploy(R2)  # (the daemon hands the stored target over again)
        await second.converged()
        assert second.engine.running() == {"db": "r2", "web": "r2"}
        assert len(engine.by_id) == 2  # no leftover of the interrupted update
        assert second.status("a1") is UpdateStatus.DONE
        # no update lock left behind: neither the killed agent's nor the new one's
        assert list(second.lock_dir.rglob("*.lock")) == []


def hand_over(rel: str, rid: int, tag: str) -> TargetState:
    labels = {"io.balena.update.strategy": "hand-over"}
    services = {"web": svc(f"reg.test/web:{tag}", labels=labels)}
    return target({"a1": app(1, release(rel, services, rid=rid))})


async def test_hand_over_keeps_the_old_container_until_the_new_one_says_handover_complete(
    tmp_path,
) -> None:
    async with Rig(tmp_path) as rig:
        rig.deploy(hand_over("r1", 1, "1"))
        await rig.converged()
        rig.deploy(hand_over("r2", 2, "2"))

        def both_running() -> bool:
            running = {c.name for c in rig.engine.by_id.values() if c.state == "running"}
            return running == {"web_1_1_r1", "web_1_2_r2"}

        await rig.until(both_running, "old and new web side by side")
        await asyncio.sleep(0.05)  # the old one keeps serving while nothing is signalled
        assert both_running()
        assert rig.status("a1") is UpdateStatus.APPLYING_CHANGES
        (rig.lock_dir / "1" / "web" / "handover-complete").write_text("")
        await rig.converged()
        assert {c.name for c in rig.engine.by_id.values()} == {"web_1_2_r2"}
        assert normalize_image_ref("reg.test/web:1") not in {
            r for refs in rig.engine.images.values() for r in refs
        }
