import os

import pytest

from agent.locks import (
    AgentLocks,
    LockHeld,
    clear_own_stale_locks,
    handover_signalled,
    held_locks,
    remove_app_locks,
)


def lock(tmp_path, app_id, service, name="updates.lock"):
    d = tmp_path / str(app_id) / service
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text("")
    return d / name


def test_app_locks_are_seen_per_app(tmp_path):
    lock(tmp_path, 1, "main")
    lock(tmp_path, 1, "aux", "resin-updates.lock")
    lock(tmp_path, 2, "x", "not-a-lock")
    held = held_locks(tmp_path)
    assert set(held) == {1}
    assert sorted(h.service for h in held[1]) == ["aux", "main"]


def test_agent_takes_every_service_lock_and_releases_it(tmp_path):
    taken = AgentLocks.take(tmp_path, 3, ["main", "aux"])
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.lock"))
    assert files == [
        "3/aux/resin-updates.lock",
        "3/aux/updates.lock",
        "3/main/resin-updates.lock",
        "3/main/updates.lock",
    ]
    if os.geteuid() == 0:
        assert (tmp_path / "3/main/updates.lock").stat().st_uid == 65534
    assert held_locks(tmp_path) == {}, "the agent's own locks don't block its own updates"
    taken.release()
    assert list(tmp_path.rglob("*.lock")) == []


def test_an_app_lock_makes_taking_fail_and_leaves_nothing_behind(tmp_path):
    app_lock = lock(tmp_path, 3, "main", "resin-updates.lock")
    with pytest.raises(LockHeld) as exc:
        AgentLocks.take(tmp_path, 3, ["aux", "main"])
    assert exc.value.holder.service == "main"
    assert sorted(tmp_path.rglob("*.lock")) == [app_lock]


def test_restart_clears_own_stale_locks_but_never_an_apps(tmp_path):
    AgentLocks.take(tmp_path, 4, ["main"])  # never released: a crash
    app_lock = lock(tmp_path, 5, "db")
    removed = clear_own_stale_locks(tmp_path)
    assert len(removed) == 2
    assert sorted(tmp_path.rglob("*.lock")) == [app_lock]


def test_force_removes_the_apps_locks(tmp_path):
    lock(tmp_path, 6, "main")
    lock(tmp_path, 7, "other")
    removed = remove_app_locks(tmp_path, 6)
    assert [h.service for h in removed] == ["main"]
    assert set(held_locks(tmp_path)) == {7}


def test_handover_signals(tmp_path):
    lock(tmp_path, 8, "main", "handover-complete")
    lock(tmp_path, 8, "legacy", "resin-kill-me")
    lock(tmp_path, 8, "other", "updates.lock")
    assert handover_signalled(tmp_path) == {(8, "main"), (8, "legacy")}
