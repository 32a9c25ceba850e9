"""The rollback controller's record and decisions (agent/reconcile/rollback.py), without an
engine: which release is gone back to, what the planner is told, what survives a restart."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.reconcile.rollback import Rollback
from agent.store import Store
from tests.unit.reconcile.factories import ROLLBACK_DEVICE as DEV
from tests.unit.reconcile.factories import rollback_body as body


def controller(root: Path) -> tuple[Rollback, SimpleNamespace, list[str]]:
    reconciler = SimpleNamespace(target=None, wake=lambda: None)
    status = SimpleNamespace(app=lambda uuid: None)
    retargets: list[str] = []
    rb = Rollback(
        Store(root),
        engine=None,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        reconciler=reconciler,  # type: ignore[arg-type]
        device_uuid=DEV,
        retarget=lambda: retargets.append("retarget"),
    )
    return rb, reconciler, retargets


def release_in(doc: dict[str, Any]) -> str:
    return next(iter(doc[DEV]["apps"]["a1"]["releases"]))


async def test_a_failed_release_is_replaced_by_the_last_one_that_passed_and_it_survives_a_restart(
    tmp_path: Path,
) -> None:
    rb, reconciler, retargets = controller(tmp_path)
    rb.adjust(body("r1", "web:1"))
    rb._passed("a1", "r1", "test")
    rb.adjust(body("r2", "web:2"))
    assert reconciler.keep_images == frozenset({"web:1"})  # r1's images kept during probation
    await rb._failed("a1", "r2", "web exited (exit 1)")
    assert retargets == ["retarget"]
    assert release_in(rb.adjust(body("r2", "web:2"))) == "r1"
    assert reconciler.rolled_back == {"a1": ("r2", "rolled back: web exited (exit 1)")}

    again, reconciler2, _ = controller(tmp_path)  # a restart: the decision is read back
    assert release_in(again.adjust(body("r2", "web:2"))) == "r1"
    assert reconciler2.rolled_back == {"a1": ("r2", "rolled back: web exited (exit 1)")}

    # the cloud names another release: applied as it is; a bad r3 still goes back to r1
    assert release_in(again.adjust(body("r3", "web:3"))) == "r3"
    assert reconciler2.rolled_back == {}
    await again._failed("a1", "r3", "web never started (created after 60 s)")
    assert release_in(again.adjust(body("r3", "web:3"))) == "r1"


async def test_first_release_has_nothing_to_go_back_to_and_force_forgets(tmp_path: Path) -> None:
    rb, reconciler, retargets = controller(tmp_path)
    doc = body("r1", "web:1")
    rb.adjust(doc)
    await rb._failed("a1", "r1", "web exited (exit 1)")
    assert retargets == []  # nothing to re-target to
    assert reconciler.failed_releases == {
        "r1": "failed: web exited (exit 1); no previous release to go back to"
    }
    assert rb.adjust(doc) is doc
    rb.force()
    assert reconciler.failed_releases == {} and retargets == ["retarget"]
    assert rb.state["apps"]["a1"]["current"]["since"] is None  # judged again from the start
