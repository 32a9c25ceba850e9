import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from structlog.testing import capture_logs

from agent.locks import (
    HANDOVER_FILES,
    LOCK_FILES,
    MARKER,
    OWNER_UID,
    AgentLocks,
    EntryKind,
    LockHeld,
    _is_own,
    clear_handover,
    clear_own_stale_locks,
    handover_signalled,
    held_locks,
    holder_fields,
    remove_app_locks,
)

T = TypeVar("T")


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


# --- hostile entries: the lock dirs are written by the containers -------------------------

ODD_KINDS = ("fifo", "symlink", "directory", "socket", "dangling symlink")
ALL_NAMES = LOCK_FILES + HANDOVER_FILES


@pytest.fixture
def lock_root():
    """A short lock dir (unix socket paths are limited to 108 bytes) and a 'host' dir beside
    it holding a file the containers must never get the agent to read, write or remove."""
    root = Path(tempfile.mkdtemp(prefix="lk", dir="/tmp"))
    (root / "host").mkdir()
    secret = root / "host" / "secret"
    secret.write_bytes(MARKER)  # looks like the agent's own lock if it were ever followed
    if os.geteuid() == 0:
        os.chown(secret, OWNER_UID, OWNER_UID)
    sockets: list[socket.socket] = []
    yield root / "locks", secret, sockets
    for s in sockets:
        s.close()
    shutil.rmtree(root)


def make_entry(path: Path, kind: str, secret: Path, sockets: list[socket.socket]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
        if os.geteuid() == 0:
            os.chown(path, OWNER_UID, OWNER_UID)  # even owned like the agent's: never opened
    elif kind == "symlink":
        path.symlink_to(secret)
    elif kind == "dangling symlink":
        path.symlink_to(secret.parent / "does-not-exist")
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        sockets.append(s)
    else:
        raise AssertionError(kind)


def promptly(fn: Callable[[], T], timeout: float = 5.0) -> T:
    """Run `fn` in a daemon thread; fail (rather than hang) if it blocks, e.g. on a FIFO."""
    out: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} blocked"
    if errors:
        raise errors[0]
    return out[0]


def expected_kind(kind: str) -> EntryKind:
    return EntryKind.SYMLINK if "symlink" in kind else EntryKind(kind)


def assert_secret_untouched(secret: Path) -> None:
    assert secret.read_bytes() == MARKER
    assert not secret.is_symlink()


@pytest.mark.parametrize("name", LOCK_FILES)
@pytest.mark.parametrize("kind", ODD_KINDS)
def test_an_odd_entry_at_a_lock_name_is_a_held_lock_and_never_followed(lock_root, kind, name):
    lock_dir, secret, sockets = lock_root
    path = lock_dir / "9" / "main" / name
    make_entry(path, kind, secret, sockets)

    held = promptly(lambda: held_locks(lock_dir))
    (holder,) = held[9]
    assert (holder.service, holder.path, holder.kind) == ("main", path, expected_kind(kind))
    assert holder_fields(holder)["kind"] == str(expected_kind(kind))

    with pytest.raises(LockHeld) as exc:
        promptly(lambda: AgentLocks.take(lock_dir, 9, ["main", "aux"]))
    assert exc.value.holder.kind is expected_kind(kind)
    assert str(expected_kind(kind)) in str(exc.value)
    left = {p for p in (lock_dir / "9" / "main").iterdir()} | set(
        (lock_dir / "9" / "aux").iterdir()
    )
    assert left == {path}, "taking failed but left the agent's own files behind"

    assert promptly(lambda: clear_own_stale_locks(lock_dir)) == []
    assert os.path.lexists(path), "an app's entry was removed as a stale agent lock"
    assert_secret_untouched(secret)


@pytest.mark.parametrize("name", LOCK_FILES)
@pytest.mark.parametrize("kind", ODD_KINDS)
def test_a_forced_update_removes_an_odd_lock_entry_but_never_a_links_target(lock_root, kind, name):
    lock_dir, secret, sockets = lock_root
    path = lock_dir / "9" / "main" / name
    make_entry(path, kind, secret, sockets)
    removed = promptly(lambda: remove_app_locks(lock_dir, 9))
    assert [h.path for h in removed] == [path]
    assert not os.path.lexists(path)
    assert held_locks(lock_dir) == {}
    assert_secret_untouched(secret)
    taken = promptly(lambda: AgentLocks.take(lock_dir, 9, ["main"]))
    taken.release()


def test_a_directory_with_something_in_it_stays_held_after_force(lock_root):
    lock_dir, secret, sockets = lock_root
    path = lock_dir / "9" / "main" / "updates.lock"
    path.mkdir(parents=True)
    (path / "inside").write_text("app data")
    with capture_logs() as logs:
        assert remove_app_locks(lock_dir, 9) == []
    assert (path / "inside").read_text() == "app data", "rm -r of an app's directory"
    (holder,) = held_locks(lock_dir)[9]
    assert holder.kind is EntryKind.DIRECTORY
    (warning,) = [e for e in logs if e["event"] == "lock_not_removed"]
    assert warning["kind"] == "directory" and warning["path"] == str(path)


@pytest.mark.parametrize("name", HANDOVER_FILES)
@pytest.mark.parametrize("kind", ODD_KINDS)
def test_an_odd_entry_at_a_handover_name_signals_and_is_cleared_without_following(
    lock_root, kind, name
):
    lock_dir, secret, sockets = lock_root
    path = lock_dir / "9" / "main" / name
    make_entry(path, kind, secret, sockets)
    assert promptly(lambda: handover_signalled(lock_dir)) == {(9, "main")}
    promptly(lambda: clear_handover(lock_dir, 9, "main"))
    assert not os.path.lexists(path)
    assert handover_signalled(lock_dir) == frozenset()
    assert_secret_untouched(secret)


@pytest.mark.parametrize("name", HANDOVER_FILES)
def test_a_handover_directory_that_cant_be_removed_is_logged_not_raised(lock_root, name):
    lock_dir, _secret, _sockets = lock_root
    path = lock_dir / "9" / "main" / name
    path.mkdir(parents=True)
    (path / "x").write_text("")
    with capture_logs() as logs:
        clear_handover(lock_dir, 9, "main")
    assert (path / "x").exists()
    (warning,) = [e for e in logs if e["event"] == "handover_entry_not_removed"]
    assert warning["kind"] == "directory" and warning["path"] == str(path)


def test_a_symlinked_service_or_app_dir_is_not_walked_into(lock_root):
    lock_dir, secret, _sockets = lock_root
    outside = secret.parent / "svc"
    outside.mkdir()
    (outside / "updates.lock").write_text("")
    (outside / "handover-complete").write_text("")
    (lock_dir / "9").mkdir(parents=True)
    (lock_dir / "9" / "main").symlink_to(outside)
    (lock_dir / "10").symlink_to(secret.parent)
    assert held_locks(lock_dir) == {}
    assert handover_signalled(lock_dir) == frozenset()
    with pytest.raises(NotADirectoryError):
        AgentLocks.take(lock_dir, 9, ["main"])
    assert sorted(p.name for p in outside.iterdir()) == ["handover-complete", "updates.lock"]


def test_own_lock_is_recognised_only_as_a_regular_file_with_the_marker(lock_root):
    lock_dir, secret, _sockets = lock_root
    taken = AgentLocks.take(lock_dir, 9, ["main"])
    own = lock_dir / "9" / "main" / "updates.lock"
    assert _is_own(own)
    assert not _is_own(lock_dir / "9" / "main")  # a directory
    link = lock_dir / "9" / "link"
    link.symlink_to(secret)  # target has the marker and the owner uid, but it's a link
    assert not _is_own(link)
    taken.release()


def test_a_marker_file_of_another_uid_is_an_apps_lock(lock_root):
    lock_dir, _secret, _sockets = lock_root
    path = lock_dir / "9" / "main" / "updates.lock"
    path.parent.mkdir(parents=True)
    path.write_bytes(MARKER)
    os.chown(path, 1000, 1000)
    assert [h.path for h in held_locks(lock_dir)[9]] == [path]
    assert clear_own_stale_locks(lock_dir) == []


@pytest.mark.parametrize("swap", ["fifo", "symlink"])
def test_an_entry_swapped_after_lstat_is_neither_blocked_on_nor_followed(lock_root, swap):
    """The app may replace the agent's file between the lstat and the open: O_NONBLOCK and
    O_NOFOLLOW plus the fstat check make that a 'not ours', never a hang or a followed link."""
    lock_dir, secret, _sockets = lock_root
    AgentLocks.take(lock_dir, 9, ["main"])
    path = lock_dir / "9" / "main" / "updates.lock"
    seen = os.lstat(path)
    path.unlink()
    if swap == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(secret)
    assert promptly(lambda: _is_own(path, seen)) is False
    assert_secret_untouched(secret)
