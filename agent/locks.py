"""Update locks: the files apps create to say "don't touch me now".

Layout (shared with the reference supervisor): `{lockDir}/{appId}/{serviceName}/updates.lock`
(legacy `resin-updates.lock`), bind-mounted into each container at /tmp/balena and /tmp/resin.
A lock held by any service locks the whole app.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOCK_FILES = ("updates.lock", "resin-updates.lock")


@dataclass(frozen=True)
class LockHolder:
    app_id: int
    service: str
    path: Path
    since: float  # mtime of the lock file


def held_locks(lock_dir: Path) -> dict[int, list[LockHolder]]:
    """Every lock file present under lock_dir, grouped by app id."""
    held: dict[int, list[LockHolder]] = {}
    try:
        app_dirs = list(os.scandir(lock_dir))
    except FileNotFoundError:
        return held
    for app_entry in app_dirs:
        if not app_entry.is_dir() or not app_entry.name.isdigit():
            continue
        app_id = int(app_entry.name)
        try:
            service_dirs = list(os.scandir(app_entry.path))
        except OSError:
            continue
        for svc in service_dirs:
            if not svc.is_dir():
                continue
            for name in LOCK_FILES:
                path = Path(svc.path) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                held.setdefault(app_id, []).append(
                    LockHolder(app_id=app_id, service=svc.name, path=path, since=st.st_mtime)
                )
    return held
