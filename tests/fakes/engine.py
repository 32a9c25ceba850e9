"""An in-memory container engine behind the agent's engine port (agent/engine/port.py).

It keeps containers, images, volumes and networks as dockerd's list calls show them and reads
them back through the adapter's own parsers (engine/docker.py), so names, labels and statuses
round-trip as on a real engine: a renamed container moves to the release its name carries, a
container's image is the id its ref had when it was created. It answers as dockerd does where
the apply loop depends on it: NotFound for what is gone, Conflict for a taken name or an image
in use, a created container that isn't running, a stop that exits 0.

It runs in the test's own event loop (no threads, no sleeps unless a test holds a pull). A test
can make a pull fail (`fail_pull`), hold it until released (`hold_pull`), crash a container
(`crash`) or remove one (`remove_by_hand`), set what a healthcheck says (`health_on_start`,
`set_health`), act as a service does when started (`on_start`), stop a container change
halfway (`gate`), or take the whole engine down (`die`) and bring it back (`revive`). `calls`
records every change made to it, in order, as (action, object) pairs.

Ids come from the planner simulator's scheme (tests/unit/reconcile/sim.py `image_id_for`), so
the factories' engine objects and this engine's agree.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.engine.compose import ContainerSpec
from agent.engine.docker import _container_state, _network_state, _volume_state
from agent.engine.port import CONNECTED
from agent.errors import Conflict, EngineUnavailable, NotFound, PullError
from agent.model import CurrentState, ImageState, normalize_image_ref
from agent.model.compose_options import IpamPool
from agent.model.current import LABEL_SUPERVISED, ContainerState
from tests.unit.reconcile.sim import EXIT_LABEL, image_id_for


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str  # the ref it was created from
    image_id: str
    labels: dict[str, str]
    created: int
    state: str = "created"  # created | running | exited
    exit_code: int | None = None
    healthcheck: bool = False
    health: str = "healthy"  # with a healthcheck: starting | healthy | unhealthy
    dies: int = 0  # `die` events so far
    started_at: str = "0001-01-01T00:00:00Z"  # as an inspect shows one never started

    def raw(self) -> dict[str, Any]:
        """As GET /containers/json lists it."""
        shown = {"starting": "health: starting"}.get(self.health, self.health)
        status = {
            "created": "Created",
            "running": "Up 2 seconds" + (f" ({shown})" if self.healthcheck else ""),
            "exited": f"Exited ({self.exit_code}) 1 second ago",
        }[self.state]
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "ImageID": self.image_id,
            "Labels": dict(self.labels),
            "State": self.state,
            "Status": status,
            "Created": self.created,
        }


@dataclass
class PullRule:
    error: str | None = None  # fail with this message
    times: int | None = None  # fail this many times (None: always)
    hold: asyncio.Event | None = None  # wait for this before finishing


@dataclass
class Gate:
    action: str
    name_prefix: str
    reached: asyncio.Event = field(default_factory=asyncio.Event)  # a call waits at it
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def open(self) -> None:
        self.opened.set()


@dataclass
class FakeEngine:
    by_id: dict[str, FakeContainer] = field(default_factory=dict)  # the containers
    images: dict[str, set[str]] = field(default_factory=dict)  # id -> normalized refs
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    networks: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    calls: list[tuple[str, str]] = field(default_factory=list)
    pulling: set[str] = field(default_factory=set)  # refs whose pull is in flight
    dead: bool = False
    _rules: dict[str, PullRule] = field(default_factory=dict)
    _gates: list[Gate] = field(default_factory=list)
    _streams: list[asyncio.Queue[str | None]] = field(default_factory=list)
    _health_on_start: dict[str, str] = field(default_factory=dict)  # name prefix -> health
    _on_start: list[tuple[str, Callable[[FakeContainer], None]]] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # --- what a test does to it -------------------------------------------------------------

    def fail_pull(
        self, ref: str, error: str = "manifest unknown", times: int | None = None
    ) -> None:
        """Pulls of `ref` fail with `error` (`times` times, or always)."""
        self._rules[normalize_image_ref(ref)] = PullRule(error=error, times=times)

    def hold_pull(self, ref: str) -> asyncio.Event:
        """Pulls of `ref` wait, in flight, until the returned event is set (or are cancelled)."""
        event = asyncio.Event()
        self._rules[normalize_image_ref(ref)] = PullRule(hold=event)
        return event

    def gate(self, action: str, name_prefix: str) -> Gate:
        """The next `action` (create, start, stop, kill, rename) on a container whose name
        starts with `name_prefix` waits, before it changes anything, until the gate opens."""
        gate = Gate(action, name_prefix)
        self._gates.append(gate)
        return gate

    def crash(self, name_prefix: str, exit_code: int = 1) -> None:
        """The running container whose name starts with `name_prefix` exits on its own."""
        c = next(c for c in self.by_id.values() if c.name.startswith(name_prefix))
        c.state, c.exit_code = "exited", exit_code
        self._died(c)

    def remove_by_hand(self, name_prefix: str) -> None:
        """Someone removes the container whose name starts with `name_prefix` (docker rm -f)."""
        c = next(c for c in self.by_id.values() if c.name.startswith(name_prefix))
        if c.state == "running":
            c.state, c.exit_code = "exited", 137
            self._died(c)
        del self.by_id[c.id]
        self._event("destroy")

    def health_on_start(self, name_prefix: str, health: str) -> None:
        """Containers (with a healthcheck) whose name starts with `name_prefix` report `health`
        (starting, unhealthy) once started, instead of healthy at once."""
        self._health_on_start[name_prefix] = health

    def set_health(self, name_prefix: str, health: str) -> None:
        """The healthcheck of the container whose name starts with `name_prefix` now says
        `health`."""
        c = next(c for c in self.by_id.values() if c.name.startswith(name_prefix))
        c.health = health

    def on_start(self, name_prefix: str, action: Callable[[FakeContainer], None]) -> None:
        """Run `action` (as the service would, e.g. write handover-complete) each time a
        container whose name starts with `name_prefix` is started."""
        self._on_start.append((name_prefix, action))

    def die(self) -> None:
        """The engine goes away: every call fails, the event streams end."""
        self.dead = True
        for queue in self._streams:
            queue.put_nowait(None)

    def revive(self) -> None:
        self.dead = False

    def running(self) -> dict[str, str]:
        """service name -> release uuid of the running containers (from the labels/name)."""
        return {
            c.service_name: c.release_uuid
            for c in (_container_state(x.raw()) for x in self.by_id.values())
            if c is not None and c.running
        }

    # --- reads ------------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        self._alive()
        return {"DockerRootDir": ""}  # not visible here: the disk check is skipped

    async def current_state(self, managed_image_ids: frozenset[str]) -> CurrentState:
        self._alive()
        states = (_container_state(c.raw()) for c in self.by_id.values())
        return CurrentState(
            containers=tuple(c for c in states if c is not None),
            images=tuple(
                ImageState(id=i, refs=frozenset(refs), managed=i in managed_image_ids)
                for i, refs in self.images.items()
            ),
            volumes=tuple(
                _volume_state({"Name": n, "Labels": labels}) for n, labels in self.volumes.items()
            ),
            networks=tuple(
                _network_state({"Name": n, "Id": f"net-{n}", "Labels": labels})
                for n, labels in self.networks.items()
            ),
        )

    async def containers(self) -> tuple[ContainerState, ...]:
        self._alive()
        states = (_container_state(c.raw()) for c in self.by_id.values())
        return tuple(c for c in states if c is not None)

    async def inspect_container(self, container_id: str) -> dict[str, Any] | None:
        self._alive()
        c = self.by_id.get(container_id)
        if c is None:
            return None
        health = {"Health": {"Status": c.health}} if c.healthcheck else {}
        return {
            "State": {
                "Status": c.state,
                "ExitCode": c.exit_code or 0,
                "StartedAt": c.started_at,
                **health,
            },
            "RestartCount": 0,
            "Config": {"Healthcheck": {"Test": ["CMD", "true"]}} if c.healthcheck else {},
        }

    def last_exit_code(self, container_id: str) -> int | None:
        c = self.by_id.get(container_id)
        return c.exit_code if c is not None and c.dies else None

    def die_count(self, container_id: str) -> int:
        c = self.by_id.get(container_id)
        return c.dies if c is not None else 0

    async def container_events(self) -> AsyncIterator[str]:
        self._alive()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._streams.append(queue)
        try:
            yield CONNECTED
            while (action := await queue.get()) is not None:
                yield action
        finally:
            self._streams.remove(queue)

    # --- images -----------------------------------------------------------------------------

    async def download_size(self, ref: str) -> int | None:
        return None

    async def pull(
        self, ref: str, on_progress: Callable[[int, int], None], cancel: threading.Event
    ) -> str:
        self._alive()
        norm = normalize_image_ref(ref)
        self.calls.append(("pull", norm))
        rule = self._rules.get(norm)
        self.pulling.add(norm)
        try:
            on_progress(0, 0)
            if rule is not None and rule.hold is not None:
                while not rule.hold.is_set():
                    if cancel.is_set():
                        raise PullError(f"{ref}: pull cancelled")
                    if self.dead:
                        raise PullError(f"{ref}: connection to the engine lost during pull")
                    await asyncio.sleep(0.002)
            await asyncio.sleep(0)
            if cancel.is_set():
                raise PullError(f"{ref}: pull cancelled")
            if rule is not None and rule.error is not None:
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        del self._rules[norm]
                raise PullError(f"{ref}: {rule.error}")
            on_progress(50, 512)
        finally:
            self.pulling.discard(norm)
        image_id = image_id_for(ref)
        self.images.setdefault(image_id, set()).add(norm)
        on_progress(100, 1024)
        return image_id

    async def remove_image(self, image_id: str) -> None:
        self._alive()
        if image_id not in self.images:
            raise NotFound(f"remove image {image_id[:19]}: no such image")
        users = [c.name for c in self.by_id.values() if c.image_id == image_id]
        if users:
            raise Conflict(f"remove image {image_id[:19]}: in use by {users}")
        del self.images[image_id]
        self.calls.append(("remove-image", image_id))

    # --- volumes and networks ---------------------------------------------------------------

    async def create_volume(
        self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]
    ) -> None:
        self._alive()
        self.volumes.setdefault(name, {**labels, LABEL_SUPERVISED: "true"})  # as dockerd: no 409
        self.calls.append(("create-volume", name))

    async def create_network(
        self,
        name: str,
        driver: str,
        internal: bool,
        labels: dict[str, str],
        ipam: tuple[IpamPool, ...] = (),
    ) -> None:
        self._alive()
        if name in self.networks:
            raise Conflict(f"create network {name}: network with name {name} already exists")
        self.networks[name] = {**labels, LABEL_SUPERVISED: "true"}
        self.calls.append(("create-network", name))

    async def remove_network(self, name: str, reserved: bool = False) -> None:
        self._alive()
        if self.networks.pop(name, None) is None:
            raise NotFound(f"remove network {name}: no such network")
        self.calls.append(("remove-network", name))

    # --- containers -------------------------------------------------------------------------

    async def create_container(self, spec: ContainerSpec, network_mode: str | None) -> str:
        await self._pass_gate("create", spec.name)
        if any(c.name == spec.name for c in self.by_id.values()):
            raise Conflict(f"create container {spec.name}: the name is already in use")
        norm = normalize_image_ref(spec.image)
        image_id = next((i for i, refs in self.images.items() if norm in refs), None)
        if image_id is None:
            raise NotFound(f"create container {spec.name}: no such image {spec.image}")
        seq = next(self._seq)
        container = FakeContainer(
            id=f"fake{seq:060d}",
            name=spec.name,
            image=spec.image,
            image_id=image_id,
            labels=dict(spec.create.get("labels") or {}),
            created=int(time.time()),  # as dockerd lists it: unix seconds
            healthcheck=bool(spec.create.get("healthcheck")),
        )
        self.by_id[container.id] = container
        self.calls.append(("create", spec.name))
        return container.id

    async def start(self, container_id: str) -> None:
        await self._pass_gate("start", self._name(container_id))
        c = self._container(container_id, "start container")
        self.calls.append(("start", c.name))
        if c.state == "running":
            return
        c.started_at = "2026-12-04T00:00:00Z"
        if EXIT_LABEL in c.labels:  # a one-shot: it has run and exited by now
            c.state, c.exit_code = "exited", int(c.labels[EXIT_LABEL])
            self._died(c)
            return
        c.state, c.exit_code = "running", None
        prefix = next((p for p in self._health_on_start if c.name.startswith(p)), None)
        c.health = self._health_on_start[prefix] if prefix is not None else "healthy"
        for prefix, action in self._on_start:
            if c.name.startswith(prefix):
                action(c)

    async def stop(self, container_id: str, timeout: int | None = None) -> None:
        await self._pass_gate("stop", self._name(container_id))
        c = self._container(container_id, "stop container")
        self.calls.append(("stop", c.name))
        if c.state == "running":
            c.state, c.exit_code = "exited", 0
            self._died(c)

    async def kill_and_remove(self, container_id: str, timeout: int | None = None) -> None:
        await self._pass_gate("kill", self._name(container_id))
        c = self.by_id.get(container_id)
        if c is None:
            return
        self.calls.append(("kill", c.name))
        if c.state == "running":
            c.state, c.exit_code = "exited", 137
            self._died(c)
        del self.by_id[container_id]
        self._event("destroy")

    async def rename(self, container_id: str, name: str) -> None:
        await self._pass_gate("rename", self._name(container_id))
        c = self._container(container_id, "rename container")
        if any(x.name == name and x is not c for x in self.by_id.values()):
            raise Conflict(f"rename container: the name {name} is already in use")
        self.calls.append(("rename", f"{c.name} -> {name}"))
        c.name = name

    # --- internals --------------------------------------------------------------------------

    def _alive(self) -> None:
        if self.dead:
            raise EngineUnavailable("engine unavailable: connection refused")

    def _name(self, container_id: str) -> str:
        c = self.by_id.get(container_id)
        return c.name if c is not None else ""

    async def _pass_gate(self, action: str, name: str) -> None:
        self._alive()
        gate = next(
            (g for g in self._gates if g.action == action and name.startswith(g.name_prefix)),
            None,
        )
        if gate is None:
            return
        self._gates.remove(gate)
        gate.reached.set()
        await gate.opened.wait()
        self._alive()

    def _container(self, container_id: str, what: str) -> FakeContainer:
        self._alive()
        c = self.by_id.get(container_id)
        if c is None:
            raise NotFound(f"{what}: no such container {container_id[:12]}")
        return c

    def _died(self, c: FakeContainer) -> None:
        c.dies += 1
        self._event("die")

    def _event(self, action: str) -> None:
        for queue in self._streams:
            queue.put_nowait(action)
