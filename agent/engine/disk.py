"""Room on the engine's disk for a pull: say "not enough space" before a pull fails halfway."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from agent.engine.port import EnginePort
from agent.errors import EngineError

# a pull holds the compressed download and the unpacked layers at once
UNPACK_FACTOR = 2.0
RESERVE_BYTES = 32 * 1024 * 1024  # never fill the disk to the last byte


@dataclass(frozen=True)
class Room:
    path: str
    free: int


async def engine_room(engine: EnginePort) -> Room | None:
    """Free bytes where the engine keeps its images, when this process can see that path."""
    try:
        root = str((await engine.info()).get("DockerRootDir") or "")
    except EngineError:
        return None
    if not root:
        return None

    def free() -> int | None:
        try:
            st = os.statvfs(root)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    room = await asyncio.to_thread(free)
    return Room(root, room) if room is not None else None


def shortfall(download: int, room: Room) -> int:
    """Bytes missing to pull an image of `download` bytes (0: it fits)."""
    need = int(download * UNPACK_FACTOR) + RESERVE_BYTES
    return max(0, need - room.free)
