"""Update strategies and start order on the in-memory engine, read from the order of the
engine's calls: download-then-kill (and an unknown strategy, which is that), kill-then-download,
delete-then-download, hand-over with a new container that turns unhealthy, and a service
started only once the one it depends on (`service_healthy`) is healthy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.model import UpdateStatus, normalize_image_ref
from tests.fakes.releases import index, web_only
from tests.fakes.rig import Rig
from tests.unit.reconcile.factories import app, release, svc, target
from tests.unit.reconcile.sim import image_id_for

WEB1, WEB2 = normalize_image_ref("reg.test/web:1"), normalize_image_ref("reg.test/web:2")


async def update(rig: Rig, strategy: str, **composition: Any) -> list[tuple[str, str]]:
    """web:1 running under `strategy`, then web:2 deployed and applied: the engine's calls."""
    rig.deploy(web_only("r1", 1, "1", strategy))
    await rig.converged()
    rig.engine.calls.clear()
    rig.deploy(web_only("r2", 2, "2", strategy, **composition))
    await rig.converged()
    assert rig.engine.running() == {"web": "r2"}
    assert rig.statuses("a1", "r2")[-1] == "done"
    return rig.engine.calls


@pytest.mark.parametrize("strategy", ["download-then-kill", "unknown-strategy"])
async def test_download_then_kill_pulls_before_stopping(tmp_path, strategy) -> None:
    async with Rig(tmp_path) as rig:
        calls = await update(rig, strategy)
        pulled = index(calls, "pull", WEB2)
        assert pulled < index(calls, "kill", "web_1_1_r1") < index(calls, "start", "web_1_2")


async def test_kill_then_download_stops_before_pulling(tmp_path) -> None:
    async with Rig(tmp_path) as rig:
        calls = await update(rig, "kill-then-download")
        killed = index(calls, "kill", "web_1_1_r1")
        assert killed < index(calls, "pull", WEB2) < index(calls, "start", "web_1_2")
        assert ("remove-image", image_id_for(WEB1)) not in calls[:killed]


async def test_delete_then_download_also_removes_the_old_image_first(tmp_path) -> None:
    async with Rig(tmp_path) as rig:
        calls = await update(rig, "delete-then-download")
        killed = index(calls, "kill", "web_1_1_r1")
        deleted = calls.index(("remove-image", image_id_for(WEB1)))
        assert killed < deleted < index(calls, "pull", WEB2) < index(calls, "start", "web_1_2")


async def test_hand_over_keeps_the_old_one_when_the_new_one_is_unhealthy(tmp_path) -> None:
    healthcheck = {"test": ["CMD", "false"], "interval": "1s", "retries": 1}

    with capture_logs() as logs:
        async with Rig(tmp_path) as rig:
            rig.deploy(web_only("r1", 1, "1", "hand-over"))
            await rig.converged()
            rig.engine.health_on_start("web_1_2_r2", "unhealthy")
            timeout = {"io.balena.update.handover-timeout": "10"}  # ms: long past meanwhile
            r2 = web_only("r2", 2, "2", "hand-over", timeout, healthcheck=healthcheck)
            rig.deploy(r2)
            await rig.until(lambda: len(rig.engine.by_id) == 2, "the new one beside")
            await asyncio.sleep(0.1)  # many passes, well past the hand-over timeout
            states = {c.name: c.state for c in rig.engine.by_id.values()}
            assert states == {"web_1_1_r1": "running", "web_1_2_r2": "running"}
            assert not [c for c in rig.engine.calls if c == ("kill", "web_1_1_r1")]
            assert rig.status("a1") is UpdateStatus.APPLYING_CHANGES
            # it turns healthy: the hand-over goes on (its timeout is long past)
            rig.engine.set_health("web_1_2_r2", "healthy")
            await rig.converged()
            assert {c.name for c in rig.engine.by_id.values()} == {"web_1_2_r2"}
    waiting = [e for e in logs if e["event"] == "apply_waiting"]
    assert any("web: new container is unhealthy" in r for e in waiting for r in e["reasons"])


async def test_depends_on_service_healthy_starts_in_order(tmp_path) -> None:
    db = svc(
        "reg.test/db:1",
        id=2,
        image_id=2,
        composition={"healthcheck": {"test": ["CMD", "test", "-f", "/tmp/ready"]}},
    )
    web = svc(
        "reg.test/web:1", composition={"depends_on": {"db": {"condition": "service_healthy"}}}
    )
    tgt = target({"a1": app(1, release("r1", {"db": db, "web": web}))})

    async with Rig(tmp_path) as rig:
        rig.engine.health_on_start("db_", "starting")
        rig.deploy(tgt)
        await rig.until(lambda: rig.engine.running().get("db"), "db running")
        await asyncio.sleep(0.1)  # passes go on while db's healthcheck says `starting`
        assert "web" not in rig.engine.running()
        assert not [c for c in rig.engine.calls if c[1].startswith("web_")]
        healthy_at = len(rig.engine.calls)
        rig.engine.set_health("db_", "healthy")
        await rig.converged()
        assert index(rig.engine.calls, "start", "web_") >= healthy_at
        assert rig.engine.running() == {"db": "r1", "web": "r1"}
