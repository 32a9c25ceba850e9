"""Update locks: the files apps create to say "don't touch me now".

Layout (shared with the reference supervisor): `{lockDir}/{appId}/{serviceName}/updates.lock`
(legacy `resin-updates.lock`), bind-mounted into each container at /tmp/balena and /tmp/resin.
A lock held by any service locks the whole app.

The agent takes the same locks itself (O_EXCL creates, owned by uid 65534 like the reference)
around the steps that stop or start an app's containers, so an app can't grab one halfway. Its
own lock files carry a marker line, which is how a restarted agent tells its stale locks (left
by a crash) from an app's — and it only ever removes its own, unless an update is forced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LOCK_FILES = ("updates.lock", "resin-updates.lock")
HANDOVER_FILES = ("handover-complete", "resin-kill-me")
OWNER_UID = 65534
MARKER = b"device-agent update lock\n"


@dataclass(frozen=True)
class LockHolder:
    app_id: int
    service: str
    path: Path
    since: float  # mtime of the lock file


def holder_fields(holder: LockHolder) -> dict[str, object]:
    """A lock holder as log fields: which app and service, which file, since when."""
    return {
        "app_id": holder.app_id,
        "service": holder.service,
        "path": str(holder.path),
        "since": holder.since,
    }


class LockHeld(Exception):
    """An app holds its update lock: its containers must not be touched now."""

    def __init__(self, holder: LockHolder) -> None:
        super().__init__(f"{holder.service} holds {holder.path}")
        self.holder = holder


def service_dir(lock_dir: Path, app_id: int, service: str) -> Path:
    return lock_dir / str(app_id) / service


def _is_own(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(MARKER) + 1) == MARKER
    except OSError:
        return False


def _lock_files(lock_dir: Path) -> Iterable[tuple[int, str, Path]]:
    try:
        app_dirs = list(os.scandir(lock_dir))
    except (FileNotFoundError, NotADirectoryError):
        return
    for app_entry in app_dirs:
        if not app_entry.is_dir() or not app_entry.name.isdigit():
            continue
        try:
            service_dirs = list(os.scandir(app_entry.path))
        except OSError:
            continue
        for svc in service_dirs:
            if not svc.is_dir():
                continue
            for name in LOCK_FILES:
                path = Path(svc.path) / name
                if os.path.lexists(path):
                    yield int(app_entry.name), svc.name, path


def held_locks(lock_dir: Path) -> dict[int, list[LockHolder]]:
    """Locks held by apps (not by this agent), grouped by app id."""
    held: dict[int, list[LockHolder]] = {}
    for app_id, service, path in _lock_files(lock_dir):
        if _is_own(path):
            continue
        try:
            since = path.lstat().st_mtime
        except OSError:
            continue
        held.setdefault(app_id, []).append(LockHolder(app_id, service, path, since))
    return held


def handover_signalled(lock_dir: Path) -> frozenset[tuple[int, str]]:
    """(app id, service) pairs whose new container wrote handover-complete (or resin-kill-me)."""
    out: set[tuple[int, str]] = set()
    try:
        app_dirs = list(os.scandir(lock_dir))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    for app_entry in app_dirs:
        if not app_entry.name.isdigit() or not app_entry.is_dir():
            continue
        with contextlib.suppress(OSError):
            for svc in os.scandir(app_entry.path):
                if any(os.path.lexists(os.path.join(svc.path, f)) for f in HANDOVER_FILES):
                    out.add((int(app_entry.name), svc.name))
    return frozenset(out)


def clear_handover(lock_dir: Path, app_id: int, service: str) -> None:
    for name in HANDOVER_FILES:
        with contextlib.suppress(FileNotFoundError):
            (service_dir(lock_dir, app_id, service) / name).unlink()


def clear_own_stale_locks(lock_dir: Path) -> list[Path]:
    """Remove the lock files a previous run of the agent left behind (after a crash)."""
    removed = []
    for _app_id, _service, path in _lock_files(lock_dir):
        if _is_own(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def remove_app_locks(lock_dir: Path, app_id: int) -> list[LockHolder]:
    """Forced update: remove every lock of the app, the app's own included."""
    removed = []
    for holder in held_locks(lock_dir).get(app_id, []):
        with contextlib.suppress(FileNotFoundError):
            holder.path.unlink()
            removed.append(holder)
    return removed


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
                for name in LOCK_FILES:
                    taken._create(directory / name, app_id, service)
        except BaseException:
            taken.release()
            raise
        return taken

    def _create(self, path: Path, app_id: int, service: str) -> None:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            since = 0.0
            with contextlib.suppress(OSError):
                since = path.lstat().st_mtime
            raise LockHeld(LockHolder(app_id, service, path, since)) from None
        try:
            os.write(fd, MARKER)
            with contextlib.suppress(PermissionError):
                os.fchown(fd, OWNER_UID, OWNER_UID)
        finally:
            os.close(fd)
        self.paths.append(path)

    def release(self) -> None:
        for path in self.paths:
            if _is_own(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self.paths.clear()
