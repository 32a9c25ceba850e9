"""Update locks on the in-memory engine: the legacy lock name holds an update as the current one
does, and the fleet's override-lock setting lets it through, removing the apps' lock files.
(The app's lock held and released: tests/fakeengine/test_apply.py.)"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from structlog.testing import capture_logs

from agent.model import UpdateStatus
from agent.reconcile import executor
from tests.fakes.releases import R2, on_r1
from tests.fakes.rig import Rig


async def test_the_legacy_resin_lock_name_holds_the_update_until_removed(tmp_path) -> None:
    async with Rig(tmp_path) as rig:
        await on_r1(rig)
        # /tmp/resin/resin-updates.lock in the container: the same host directory
        lock = rig.lock_dir / "1" / "db" / "resin-updates.lock"
        lock.write_text("")
        rig.deploy(R2)
        await rig.until(lambda: rig.status("a1") is UpdateStatus.DOWNLOADED, "downloaded")
        await asyncio.sleep(0.05)
        view = rig.board.app("a1")
        assert view is not None and view.reason == "update lock held by db"
        assert rig.engine.running() == {"db": "r1", "web": "r1"}  # the whole app holds
        assert not [c for c in rig.engine.calls if c[0] in {"kill", "stop", "create"}]
        lock.unlink()
        await rig.converged()
        assert rig.engine.running() == {"db": "r2", "web": "r2"}


async def test_override_lock_proceeds_and_removes_the_lock_files(tmp_path) -> None:
    with capture_logs() as logs:
        async with Rig(tmp_path) as rig:
            await on_r1(rig)
            lock = rig.lock_dir / "1" / "web" / "updates.lock"
            lock.write_text("")
            rig.deploy(R2)
            await rig.until(lambda: (v := rig.board.app("a1")) and v.reason, "held")
            assert rig.status("a1") is UpdateStatus.DOWNLOADED
            rig.override_lock = True  # BALENA_SUPERVISOR_OVERRIDE_LOCK=1 arrives
            rig.reconciler.wake()
            await rig.converged()
            assert rig.engine.running() == {"db": "r2", "web": "r2"}
            assert list(rig.lock_dir.rglob("*.lock")) == []
    overridden = [e for e in logs if e["event"] == "lock_overridden"]
    assert overridden and overridden[0]["service"] == "web"


async def test_a_stop_while_the_locks_are_being_taken_leaves_none_behind(
    tmp_path, monkeypatch
) -> None:
    """The agent stopped (its apply task cancelled) while a worker thread takes the update
    locks: the thread finishes, and what it took is released — a lock file of the agent's left
    behind would look like the app's to the next pass, which would wait on it for ever."""
    taking = threading.Event()
    real = executor._take_app_locks

    def slow_take(*args: Any) -> Any:
        taking.set()
        time.sleep(0.2)  # the cancel lands while the thread is in here
        return real(*args)

    monkeypatch.setattr(executor, "_take_app_locks", slow_take)
    async with Rig(tmp_path) as rig:
        await on_r1(rig)
        taking.clear()  # r1's start took them too
        rig.deploy(R2)
        await rig.until(taking.is_set, "taking the locks")
        await rig.crash()
    assert list(rig.lock_dir.rglob("*.lock")) == []
    async with Rig(tmp_path, rig.engine) as again:
        again.deploy(R2)
        await again.converged()
        assert again.engine.running() == {"db": "r2", "web": "r2"}
