"""The engine port: what the apply loop and its executor ask of the container engine.

`DockerEngine` (agent/engine/docker.py) satisfies it structurally; tests drive the real
`Reconciler` and `Executor` against an in-memory engine (tests/fakes/engine.py) through the same
Protocol. Only the calls the reconcile loop, the executor and the helpers they hand the engine to
(engine/disk.py) make are here: the local API's and the log stream's calls are not.
`ProbationEngine` is what the probation watch (reconcile/rollback.py) reads.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from agent.engine.compose import ContainerSpec
from agent.model import CurrentState
from agent.model.compose_options import IpamPool
from agent.model.current import ContainerState

CONNECTED = "connected"  # container_events' first item: the stream is open


class EnginePort(Protocol):
    # --- reads ------------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        """The engine's info (`DockerRootDir`: where it keeps images, for the disk check)."""
        ...

    async def current_state(self, managed_image_ids: frozenset[str]) -> CurrentState:
        """One snapshot of the supervised containers, all images, the supervised volumes and
        networks; images whose id is in `managed_image_ids` are marked managed."""
        ...

    def container_events(self) -> AsyncIterator[str]:
        """The actions (`die`, `destroy`, `oom`) of supervised containers as they happen, first
        `CONNECTED` once open; ends when the stream breaks."""
        ...

    # --- images -----------------------------------------------------------------------------
    async def download_size(self, ref: str) -> int | None:
        """Bytes a pull of `ref` would download (None: can't be told)."""
        ...

    async def pull(
        self, ref: str, on_progress: Callable[[int, int], None], cancel: threading.Event
    ) -> str:
        """Pull `ref` (on_progress(percent, bytes) as it goes, possibly from another thread);
        `cancel` aborts it with a PullError. Returns the image id."""
        ...

    async def remove_image(self, image_id: str) -> None: ...

    # --- volumes and networks ---------------------------------------------------------------
    async def create_volume(
        self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]
    ) -> None: ...

    async def create_network(
        self,
        name: str,
        driver: str,
        internal: bool,
        labels: dict[str, str],
        ipam: tuple[IpamPool, ...] = (),
    ) -> None: ...

    async def remove_network(self, name: str, reserved: bool = False) -> None: ...

    # --- containers -------------------------------------------------------------------------
    async def create_container(self, spec: ContainerSpec, network_mode: str | None) -> str:
        """Create (not start) the container; Conflict when the name is taken. Returns its id."""
        ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: int | None = None) -> None: ...

    async def kill_and_remove(self, container_id: str, timeout: int | None = None) -> None:
        """Stop gracefully and remove; a container already gone is fine."""
        ...

    async def rename(self, container_id: str, name: str) -> None: ...


class ProbationEngine(Protocol):
    """What the probation watch reads of the release on probation."""

    async def containers(self) -> tuple[ContainerState, ...]:
        """The supervised containers from one list call (status, health, exit code)."""
        ...

    async def inspect_container(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect (None: it is gone)."""
        ...

    def die_count(self, container_id: str) -> int:
        """How many `die` events the engine's event stream has shown for the container."""
        ...

    def last_exit_code(self, container_id: str) -> int | None:
        """The exit code of its latest `die` seen (None: none seen)."""
        ...
