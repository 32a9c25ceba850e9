"""Update locks: the files apps create to say "don't touch me now".

Layout (shared with the reference supervisor): `{lockDir}/{appId}/{serviceName}/updates.lock`
(legacy `resin-updates.lock`), bind-mounted into each container at /tmp/balena and /tmp/resin.
A lock held by any service locks the whole app.

The agent takes the same locks itself (O_EXCL creates, owned by uid 65534 like the reference)
around the steps that stop or start an app's containers, so an app can't grab one halfway. Its
own lock files carry a marker line, which is how a restarted agent tells its stale locks (left
by a crash) from an app's — and it only ever removes its own, unless an update is forced.

The lock dirs are written by the containers, so nothing found there is trusted: entries are
looked at with `lstat` only, a file is opened only when `lstat` says it is a regular file of the
agent's owner uid, and then with O_NOFOLLOW|O_NONBLOCK and an `fstat` check. A symlink is never
followed, a FIFO never blocks a read. Anything at a lock name that isn't the agent's own regular
file (an app's file, a directory, a symlink, a FIFO, a socket, a device node) means the app holds
its lock, with the kind of entry said in the log. Removal (forced updates, the agent's own
stale locks, hand-over signals) is the reference's: unlink, and rmdir for a directory.

Every function here does blocking I/O: async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import structlog

from agent.errors import AgentError

log = structlog.get_logger("agent.locks")

LOCK_FILES = ("updates.lock", "resin-updates.lock")
HANDOVER_FILES = ("handover-complete", "resin-kill-me")
OWNER_UID = 65534
MARKER = b"device-agent update lock\n"

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE_FLAGS = (
    os.O_CREAT
    | os.O_EXCL
    | os.O_WRONLY
    | os.O_NOFOLLOW
    | os.O_NONBLOCK
    | os.O_NOCTTY
    | os.O_CLOEXEC
)


class EntryKind(StrEnum):
    """What sits at a lock or hand-over name, as `lstat` sees it (links not followed)."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    FIFO = "fifo"
    SOCKET = "socket"
    CHAR_DEVICE = "character device"
    BLOCK_DEVICE = "block device"
    OTHER = "other"


def entry_kind(mode: int) -> EntryKind:
    for test, kind in (
        (stat.S_ISREG, EntryKind.FILE),
        (stat.S_ISDIR, EntryKind.DIRECTORY),
        (stat.S_ISLNK, EntryKind.SYMLINK),
        (stat.S_ISFIFO, EntryKind.FIFO),
        (stat.S_ISSOCK, EntryKind.SOCKET),
        (stat.S_ISCHR, EntryKind.CHAR_DEVICE),
        (stat.S_ISBLK, EntryKind.BLOCK_DEVICE),
    ):
        if test(mode):
            return kind
    return EntryKind.OTHER


@dataclass(frozen=True)
class LockHolder:
    app_id: int
    service: str
    path: Path
    since: float  # mtime of the lock entry
    kind: EntryKind = EntryKind.FILE


def holder_fields(holder: LockHolder) -> dict[str, object]:
    """A lock holder as log fields: which app and service, which entry, since when."""
    return {
        "app_id": holder.app_id,
        "service": holder.service,
        "path": str(holder.path),
        "since": holder.since,
        "kind": str(holder.kind),
    }


class LockHeld(AgentError):
    """An app holds its update lock: its containers must not be touched now."""

    def __init__(self, holder: LockHolder) -> None:
        what = "" if holder.kind is EntryKind.FILE else f" (a {holder.kind})"
        super().__init__(f"{holder.service} holds {holder.path}{what}")
        self.holder = holder


def service_dir(lock_dir: Path, app_id: int, service: str) -> Path:
    return lock_dir / str(app_id) / service


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _owner_uids() -> frozenset[int]:
    # as root the agent's files belong to 65534; unprivileged (tests, dev) chown fails: its own uid
    return frozenset({OWNER_UID, os.geteuid()})


def _is_own(path: Path, st: os.stat_result | None = None) -> bool:
    """True for a lock file this agent wrote: a regular file (not followed through a link) of
    the agent's owner uid whose content is the marker. Never blocks, never follows a link."""
    st = st if st is not None else _lstat(path)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid not in _owner_uids():
        return False
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return False
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            st.st_dev,
            st.st_ino,
        ):
            return False  # swapped between lstat and open
        return os.read(fd, len(MARKER) + 1) == MARKER
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_entry(path: Path) -> OSError | None:
    """Remove whatever is at `path` the way the reference's lockfile unlock does: unlink (a
    symlink itself, never its target), and rmdir when it is a directory. None when it is gone
    (or was never there), else the error that kept it (e.g. a directory that isn't empty)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return None
    except (IsADirectoryError, PermissionError) as exc:
        st = _lstat(path)
        if st is None:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return exc
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return None
        except OSError as rmdir_exc:
            return rmdir_exc
    except OSError as exc:
        return exc
    return None


def _real_dirs(path: str | Path) -> list[os.DirEntry[str]]:
    """Subdirectories of `path`, symlinks to directories left out."""
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def service_dirs(lock_dir: Path) -> Iterator[tuple[int, os.DirEntry[str]]]:
    """(app id, service dir entry) for every real directory `{lockDir}/{appId}/{service}`."""
    for app_entry in _real_dirs(lock_dir):
        if not (app_entry.name.isascii() and app_entry.name.isdigit()):
            continue
        for svc in _real_dirs(app_entry.path):
            yield int(app_entry.name), svc


def _lock_entries(lock_dir: Path) -> Iterable[tuple[int, str, Path, os.stat_result]]:
    for app_id, svc in service_dirs(lock_dir):
        for name in LOCK_FILES:
            path = Path(svc.path) / name
            st = _lstat(path)
            if st is not None:
                yield app_id, svc.name, path, st


def held_locks(lock_dir: Path) -> dict[int, list[LockHolder]]:
    """Locks held by apps (not by this agent), grouped by app id. Any entry at a lock name
    that isn't the agent's own regular file counts as held, whatever its kind."""
    held: dict[int, list[LockHolder]] = {}
    for app_id, service, path, st in _lock_entries(lock_dir):
        if _is_own(path, st):
            continue
        holder = LockHolder(app_id, service, path, st.st_mtime, entry_kind(st.st_mode))
        held.setdefault(app_id, []).append(holder)
    return held


def handover_signalled(lock_dir: Path) -> frozenset[tuple[int, str]]:
    """(app id, service) pairs whose new container wrote handover-complete (or resin-kill-me).

    Like the reference, the signal is that something exists at the name: whatever its kind, it
    is only looked at with lstat, never opened or followed."""
    out: set[tuple[int, str]] = set()
    for app_id, svc in service_dirs(lock_dir):
        if any(_lstat(Path(svc.path) / name) is not None for name in HANDOVER_FILES):
            out.add((app_id, svc.name))
    return frozenset(out)


def clear_handover(lock_dir: Path, app_id: int, service: str) -> None:
    """Remove a service's hand-over signals (unlink, rmdir for a directory). What can't be
    removed (a directory with something in it) is logged and left: it reads as a signal."""
    directory = service_dir(lock_dir, app_id, service)
    for name in HANDOVER_FILES:
        path = directory / name
        st = _lstat(path)
        if st is None:
            continue
        error = remove_entry(path)
        if error is not None:
            log.warning(
                "handover_entry_not_removed",
                app_id=app_id,
                service=service,
                path=str(path),
                kind=str(entry_kind(st.st_mode)),
                error=str(error),
            )


def clear_own_stale_locks(lock_dir: Path) -> list[Path]:
    """Remove the lock files a previous run of the agent left behind (after a crash)."""
    removed = []
    for _app_id, _service, path, st in _lock_entries(lock_dir):
        if _is_own(path, st):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
    return removed


def remove_app_locks(lock_dir: Path, app_id: int) -> list[LockHolder]:
    """Forced update: remove every lock of the app, the app's own included (unlink, rmdir for
    a directory; what can't be removed is logged and still holds the lock)."""
    removed = []
    for holder in held_locks(lock_dir).get(app_id, []):
        error = remove_entry(holder.path)
        if error is None:
            removed.append(holder)
        else:
            log.warning("lock_not_removed", **holder_fields(holder), error=str(error))
    return removed


def _holder_at(path: Path, app_id: int, service: str) -> LockHolder:
    st = _lstat(path)
    if st is None:
        return LockHolder(app_id, service, path, 0.0)
    return LockHolder(app_id, service, path, st.st_mtime, entry_kind(st.st_mode))


@dataclass
class AgentLocks:
    """The agent's own locks on one app, taken with O_EXCL on every service's lock files."""

    app_id: int
    paths: list[Path] = field(default_factory=list)

    @classmethod
    def take(cls, lock_dir: Path, app_id: int, services: Iterable[str]) -> AgentLocks:
        """Take the app's lock; raises LockHeld (having taken nothing) if an app holds it."""
        taken = cls(app_id)
        try:
            for service in sorted(set(services)):
                directory = service_dir(lock_dir, app_id, service)
                directory.mkdir(parents=True, exist_ok=True)
                st = os.lstat(directory)
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(f"{directory} is a {entry_kind(st.st_mode)}")
                for name in LOCK_FILES:
                    taken._create(directory / name, app_id, service)
        except BaseException:
            taken.release()
            raise
        return taken

    def _create(self, path: Path, app_id: int, service: str) -> None:
        # The marker is written to a temporary name first and linked into place: a lock file
        # never exists without its marker, so one left by a SIGKILL is always recognised as
        # ours (and removed at the next start). link() never replaces nor follows what is
        # there already (a dangling symlink included): that is the app's lock.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, _CREATE_FLAGS, 0o644)
        try:
            try:
                os.write(fd, MARKER)
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, OWNER_UID, OWNER_UID)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path, follow_symlinks=False)
            except (FileExistsError, IsADirectoryError):
                raise LockHeld(_holder_at(path, app_id, service)) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self.paths.append(path)

    def release(self) -> None:
        for path in self.paths:
            if _is_own(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        self.paths.clear()
