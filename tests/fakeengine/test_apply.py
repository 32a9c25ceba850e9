"""The real apply loop against the in-memory engine (tests/fakes): what a user sees of an update
— the order of the engine's changes, the update status, locks, gave-up pulls, a cancel, a newer
target, a rejected release — in milliseconds, in the test's own event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from structlog.testing import capture_logs

from agent.events.kinds import StatusChanged
from agent.model import UpdateStatus, normalize_image_ref
from tests.fakes.releases import (
    R1_DB,
    R2,
    WEB2,
    index,
    on_r1,
    r2_with_web_pull_held,
    two_services,
)
from tests.fakes.rig import Rig
from tests.unit.reconcile.factories import app, release, svc, target


async def test_a_two_service_update_applies_in_dependency_order_and_reports_each_status(
    tmp_path: Path,
) -> None:
    async with Rig(tmp_path) as rig:
        release_web = await r2_with_web_pull_held(rig)
        assert rig.status("a1") is UpdateStatus.DOWNLOADING
        assert rig.engine.running() == {"db": "r1", "web": "r1"}  # nothing killed yet
        release_web.set()
        await rig.converged()

        assert rig.engine.running() == {"db": "r2", "web": "r2"}
        assert rig.statuses("a1", "r2") == [
            "downloading",
            "downloaded",
            "applying changes",
            "done",
        ]
        calls = rig.engine.calls
        last_pull = max(i for i, (a, _) in enumerate(calls) if a == "pull")
        kills = [index(calls, "kill", "db_"), index(calls, "kill", "web_")]
        assert last_pull < min(kills)  # download-then-kill: both images before any kill
        # db starts before web, which depends on it; web's old container went first
        assert max(kills) < index(calls, "start", "db_1_2_r2") < index(calls, "create", "web_")
        assert index(calls, "create", "web_") < index(calls, "start", "web_1_2_r2")
        # the old images are removed once nothing uses them, the new ones are managed
        assert len(rig.images.ids) == 2
        assert {r for refs in rig.engine.images.values() for r in refs} == {
            normalize_image_ref("reg.test/db:2"),
            WEB2,
        }


async def test_an_update_lock_held_by_the_app_holds_the_kill_until_released(
    tmp_path: Path,
) -> None:
    async with Rig(tmp_path) as rig:
        await on_r1(rig)
        lock = rig.lock_dir / "1" / "web" / "updates.lock"
        lock.write_text("")  # the app's own lock file (not the agent's marker)
        rig.deploy(R2)
        await rig.until(lambda: (v := rig.board.app("a1")) and v.reason, "a reason")
        view = rig.board.app("a1")
        assert view is not None and view.reason == "update lock held by web"
        assert rig.engine.running() == {"db": "r1", "web": "r1"}
        assert not [c for c in rig.engine.calls if c[0] in {"kill", "stop", "create"}]
        assert rig.status("a1") is UpdateStatus.DOWNLOADED  # downloaded, waiting for the lock
        lock.unlink()
        await rig.converged()  # the file going away is seen without a wake-up
        assert rig.engine.running() == {"db": "r2", "web": "r2"}


async def test_a_pull_failing_max_pull_attempts_times_is_aborted_and_the_running_release_kept(
    tmp_path: Path,
) -> None:
    async with Rig(tmp_path, max_pull_attempts=3) as rig:
        await on_r1(rig)
        rig.engine.fail_pull("reg.test/web:2", "manifest for reg.test/web:2 not found")
        rig.deploy(R2)
        await rig.until(lambda: rig.status("a1") is UpdateStatus.ABORTED, "aborted")
        await asyncio.sleep(0.05)  # a given-up release is not pulled again
        view = rig.board.app("a1")
        assert view is not None and view.reason is not None
        assert view.reason.startswith("gave up after 3 failed pulls: ")
        assert "not found" in view.reason
        assert [c for c in rig.engine.calls if c == ("pull", WEB2)] == [("pull", WEB2)] * 3
        assert rig.engine.running() == {"db": "r1", "web": "r1"}
        assert not [c for c in rig.engine.calls if c[0] in {"kill", "stop", "create"}]
        assert view.current_release_uuid == "r1"
        # a later good target recovers
        rig.deploy(two_services("r3", 3, "3"))
        await rig.converged()
        assert rig.engine.running() == {"db": "r3", "web": "r3"}


async def test_cancel_during_a_held_pull_abandons_it_and_the_next_pass_starts_afresh(
    tmp_path: Path,
) -> None:
    with capture_logs() as logs:
        async with Rig(tmp_path) as rig:
            release_web = await r2_with_web_pull_held(rig)
            assert rig.reconciler.cancel_apply() is True  # a pass was in flight
            # the held pull ends (cancelled), a new pass pulls it again
            await rig.until(lambda: rig.engine.calls.count(("pull", WEB2)) == 2, "a 2nd pull")
            assert rig.engine.running() == {"db": "r1", "web": "r1"}
            view = rig.board.app("a1")
            assert view is not None and not (view.reason or "").startswith("pull failed")
            release_web.set()
            await rig.converged()
            assert rig.engine.running() == {"db": "r2", "web": "r2"}
    events = [e["event"] for e in logs]
    assert "apply_pass_cancelled" in events
    assert "release_aborted" not in events


async def test_a_lock_released_right_after_the_pass_read_it_is_seen_at_once(
    tmp_path: Path,
) -> None:
    """The app lets go of its lock between the pass's read of the lock files and the loop's
    wait for them to change: the wait compares with what the pass saw, so it ends on its next
    look (within the lock watch's tick), not at the 300 s recheck."""
    async with Rig(tmp_path) as rig:
        await on_r1(rig)
        lock = rig.lock_dir / "1" / "web" / "updates.lock"
        lock.write_text("")

        def release_when_reported(_: StatusChanged) -> None:  # runs inside the pass
            view = rig.board.app("a1")
            if view is not None and view.reason == "update lock held by web":
                lock.unlink(missing_ok=True)

        rig.bus.subscribe(StatusChanged, release_when_reported)
        rig.deploy(R2)
        await rig.converged()
        assert rig.engine.running() == {"db": "r2", "web": "r2"}


async def test_a_newer_target_cancels_the_download_in_flight(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with Rig(tmp_path) as rig:
            await r2_with_web_pull_held(rig)  # never released: r2's pull would wait forever
            rig.deploy(two_services("r3", 3, "3"))
            await rig.converged()
            assert rig.engine.running() == {"db": "r3", "web": "r3"}
            assert rig.statuses("a1", "r2") == ["downloading"]
            assert rig.statuses("a1", "r3")[-1] == "done"
            assert WEB2 not in rig.engine.pulling  # the held pull was abandoned
            assert WEB2 not in {r for refs in rig.engine.images.values() for r in refs}
    assert "target_changed_mid_apply" in [e["event"] for e in logs]


async def test_an_app_rejected_for_a_bad_release_leaves_the_running_one_alone(
    tmp_path: Path,
) -> None:
    bad = svc("reg.test/web:9", composition={"depends_on": ["x"]})
    async with Rig(tmp_path) as rig:
        await on_r1(rig)
        before = set(rig.engine.by_id)
        rig.deploy(target({"a1": app(1, release("r9", {"web": bad}, rid=9))}))
        await rig.until(lambda: rig.status("a1") is UpdateStatus.REJECTED, "rejected")
        await rig.converged()
        view = rig.board.app("a1")
        assert view is not None and "unknown service x" in (view.reason or "")
        assert set(rig.engine.by_id) == before
        assert rig.engine.running() == {"db": "r1", "web": "r1"}
        assert rig.engine.calls == []  # nothing pulled, nothing touched


async def test_an_unchanged_service_is_carried_over_by_a_rename_and_a_removed_one_goes(
    tmp_path: Path,
) -> None:
    async with Rig(tmp_path) as rig:
        await on_r1(rig)
        db_id = next(i for i, c in rig.engine.by_id.items() if c.name.startswith("db_"))
        only_db = target({"a1": app(1, release("r3", {"db": R1_DB}, rid=3, volumes={"data": {}}))})
        rig.deploy(only_db)
        await rig.converged()
        assert rig.engine.running() == {"db": "r3"}
        assert list(rig.engine.by_id) == [db_id]  # the same container, not restarted
        assert rig.engine.by_id[db_id].name == "db_1_3_r3"
        assert ("kill", "db_1_1_r1") not in rig.engine.calls
        assert ("kill", "web_1_1_r1") in rig.engine.calls
        assert "data" in {n.split("_", 1)[1] for n in rig.engine.volumes}  # the volume stays


async def test_a_container_removed_by_hand_is_recreated_at_once_from_the_engines_events(
    tmp_path: Path,
) -> None:
    """The engine's `destroy` wakes the loop: it does not wait for its 300 s recheck."""
    async with Rig(tmp_path) as rig:
        await on_r1(rig)
        web_id = next(i for i, c in rig.engine.by_id.items() if c.name.startswith("web_"))
        rig.engine.remove_by_hand("web_")
        await rig.until(lambda: rig.engine.running().get("web") == "r1", "web recreated")
        assert web_id not in rig.engine.by_id
        assert ("kill", "db_1_1_r1") not in rig.engine.calls  # db left alone
