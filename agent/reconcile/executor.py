"""Run one batch of planned steps against the engine.

Pulls run concurrently (each reporting its progress to the status board), and so do the
container starts of a pass (at most START_CONCURRENCY at once); every other step runs alone, in
plan order. A failing step is logged and returned, never raised: the next pass
re-plans from what the engine really has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

import structlog

from agent.engine.adopt import spec_on_engine
from agent.engine.compose import DeviceContext, service_lock_dir
from agent.engine.disk import UNPACK_FACTOR, engine_room, shortfall
from agent.engine.port import EnginePort
from agent.engine.supnet import SupervisorNetwork
from agent.errors import (
    AgentError,
    Conflict,
    InsufficientSpace,
    NotFound,
    PullError,
)
from agent.events.bus import Bus
from agent.events.kinds import (
    ImageDownloaded,
    InsufficientDisk,
    PullFailed,
    PullStarted,
    StepDone,
    StepFailed,
    StepStarted,
    UpdateLockHeld,
)
from agent.locks import AgentLocks, LockHeld, clear_handover, holder_fields
from agent.model import AppSpec, CurrentState, ServiceSpec
from agent.model.current import (
    LABEL_APP_ID,
    LABEL_APP_UUID,
    container_name,
    network_engine_name,
    volume_engine_name,
)
from agent.reconcile.steps import (
    CreateNetwork,
    CreateVolume,
    Kill,
    Plan,
    Pull,
    RemoveImage,
    RemoveNetwork,
    Start,
    StartContainer,
    Step,
    StopContainer,
    UpdateMetadata,
    describe,
    step_app_id,
    step_fields,
    step_service,
    subject,
)
from agent.store import LatestWriter, Store

log = structlog.get_logger("agent.executor")

ProgressSink = Callable[[Pull, int, int], None]

# Containers created and started at once. The planner only starts a service whose dependencies
# already run, so the starts of one pass never wait on each other; every other step runs alone.
START_CONCURRENCY = 4


def batches(steps: Sequence[Step]) -> list[list[Step]]:
    """`steps` in order, consecutive `Start`s grouped (they may run concurrently), every other
    step on its own."""
    out: list[list[Step]] = []
    for step in steps:
        if isinstance(step, Start) and out and isinstance(out[-1][0], Start):
            out[-1].append(step)
        else:
            out.append([step])
    return out


@dataclass(frozen=True)
class StepFailure:
    step: Step
    error: AgentError


class ManagedImages:
    """Ids of the images this agent pulled: the only ones it will ever remove."""

    KEY = "images"

    def __init__(self, store: Store) -> None:
        self._store = store
        self.ids: set[str] = set(store.get(self.KEY, []) or [])
        self._writer = LatestWriter(  # written off the event loop
            store, self.KEY, lambda exc: log.error("images_persist_failed", error=str(exc))
        )

    def add(self, image_id: str) -> None:
        if image_id not in self.ids:
            self.ids.add(image_id)
            self._save()

    def discard(self, image_id: str) -> None:
        if image_id in self.ids:
            self.ids.discard(image_id)
            self._save()

    def _save(self) -> None:
        self._writer.write(sorted(self.ids))

    async def flush(self) -> None:
        await self._writer.flush()


class Executor:
    def __init__(
        self,
        engine: EnginePort,
        device: DeviceContext,
        images: ManagedImages,
        bus: Bus | None = None,
    ) -> None:
        """`bus`: the agent's, told of pulls and held locks (a bus of its own when None)."""
        self.engine = engine
        self.device = device
        self.images = images
        self._bus = bus if bus is not None else Bus()
        self.supervisor_network: SupervisorNetwork | None = None  # set by the daemon

    async def run(
        self, plan: Plan, current: CurrentState, progress: ProgressSink, cancel: threading.Event
    ) -> list[StepFailure]:
        pulls = [s for s in plan.steps if isinstance(s, Pull)]
        others = [s for s in plan.steps if not isinstance(s, Pull)]
        failures: list[StepFailure] = []
        if pulls:
            refused = await self._check_room(pulls)
            failures += [StepFailure(p, err) for p, err in refused.items()]
            admitted = [p for p in pulls if p not in refused]
            results = await asyncio.gather(
                *(self._pull(step, progress, cancel) for step in admitted),
                return_exceptions=True,
            )
            for pull, result in zip(admitted, results, strict=True):
                if isinstance(result, AgentError):
                    failures.append(StepFailure(pull, result))
                elif isinstance(result, BaseException):
                    raise result
        held, skipped = await self._take_locks(others)
        # an app whose lock couldn't be taken fails this pass (retried with backoff), rather
        # than the loop planning the same steps again at once
        for app_id, error in skipped.items():
            first = next(s for s in others if step_app_id(s) == app_id)
            failures.append(StepFailure(first, error))
        bound = asyncio.Semaphore(START_CONCURRENCY)
        try:
            for batch in batches([s for s in others if step_app_id(s) not in skipped]):
                if cancel.is_set():
                    break
                outcomes = await asyncio.gather(
                    *(self._apply_bounded(step, current, cancel, bound) for step in batch)
                )
                failures += [f for f in outcomes if f is not None]
        finally:
            for locks in held:
                await asyncio.to_thread(locks.release)
        return failures

    async def _apply_bounded(
        self, step: Step, current: CurrentState, cancel: threading.Event, bound: asyncio.Semaphore
    ) -> StepFailure | None:
        async with bound:
            if cancel.is_set():
                return None
            try:
                await self._apply(step, current)
            except AgentError as exc:
                log.error(
                    "step_failed",
                    step=describe(step),
                    kind=step.kind.value,
                    error=str(exc),
                    **subject(step),
                )
                self._bus.publish(StepFailed(*step_fields(step), error=str(exc)))
                return StepFailure(step, exc)
        return None

    async def _take_locks(
        self, steps: Sequence[Step]
    ) -> tuple[list[AgentLocks], dict[int, AgentError]]:
        """Take the update lock of every app whose containers these steps stop or start, so
        the app can't grab it halfway. An app that holds it already keeps its containers."""
        services: dict[int, set[str]] = {}
        for step in steps:
            app_id = step_app_id(step)
            if app_id is not None:
                services.setdefault(app_id, set()).add(step_service(step) or "")
        held: list[AgentLocks] = []
        skipped: dict[int, AgentError] = {}
        for app_id, names in sorted(services.items()):
            names.discard("")
            try:
                locks = await _take_unless_cancelled(self.device.lock_dir, app_id, names)
            except LockHeld as exc:
                log.info("lock_held", **holder_fields(exc.holder))
                holder = exc.holder
                self._bus.publish(UpdateLockHeld(holder.app_id, holder.service, str(holder.path)))
                skipped[app_id] = exc
                continue
            except OSError as exc:
                log.error("lock_take_failed", app_id=app_id, error=str(exc))
                skipped[app_id] = AgentError(f"could not take the update lock: {exc}")
                continue
            held.append(locks)
        return held, skipped

    async def _check_room(self, pulls: Sequence[Pull]) -> dict[Pull, InsufficientSpace]:
        """Refuse, before they start, the pulls the engine's disk has no room for (sizes from
        the registry; a size or a disk that can't be read is not a reason to refuse)."""
        sizes = await asyncio.gather(*(self.engine.download_size(p.image) for p in pulls))
        if not any(sizes):
            return {}
        room = await engine_room(self.engine)
        if room is None:
            return {}
        refused: dict[Pull, InsufficientSpace] = {}
        committed = 0
        for pull, size in zip(pulls, sizes, strict=True):
            if size is None:
                continue
            missing = shortfall(committed + size, room)
            if missing:
                mib = 1024 * 1024
                message = (
                    f"not enough disk to pull {pull.image}: it needs about "
                    f"{(size * UNPACK_FACTOR) // mib:.0f} MiB to download and unpack, "
                    f"{room.free // mib} MiB are free in {room.path}"
                )
                log.error(
                    "insufficient_disk",
                    image=pull.image,
                    download_bytes=size,
                    free_bytes=room.free,
                    path=room.path,
                )
                self._bus.publish(InsufficientDisk(pull.image, size, room.free, room.path))
                refused[pull] = InsufficientSpace(message)
            else:
                committed += size
        return refused

    async def _pull(self, step: Pull, progress: ProgressSink, cancel: threading.Event) -> None:
        loop = asyncio.get_running_loop()

        def on_progress(percent: int, nbytes: int) -> None:
            loop.call_soon_threadsafe(progress, step, percent, nbytes)

        log.info("pull_started", image=step.image, services=list(step.services))
        self._bus.publish(PullStarted(step.image, step.services))
        try:
            image_id = await self.engine.pull(step.image, on_progress, cancel)
        except PullError as exc:
            log.error("pull_failed", image=step.image, error=str(exc))
            self._bus.publish(PullFailed(step.image, str(exc)))
            raise
        self.images.add(image_id)
        log.info("pull_done", image=step.image, image_id=image_id[:19])
        self._bus.publish(ImageDownloaded(step.image, image_id))

    async def _apply(self, step: Step, current: CurrentState) -> None:
        log.info("step_started", step=describe(step), kind=step.kind.value, **subject(step))
        self._bus.publish(StepStarted(*step_fields(step)))
        match step:
            case CreateVolume(app=app, volume=vol):
                labels = {**vol.labels, LABEL_APP_ID: str(app.id), LABEL_APP_UUID: app.uuid}
                with contextlib.suppress(Conflict):
                    await self.engine.create_volume(
                        volume_engine_name(app.id, vol.name),
                        vol.driver,
                        dict(vol.driver_opts),
                        labels,
                    )
            case CreateNetwork(app=app, network=net):
                labels = {**net.labels, LABEL_APP_ID: str(app.id), LABEL_APP_UUID: app.uuid}
                with contextlib.suppress(Conflict):
                    await self.engine.create_network(
                        network_engine_name(app.id, net.name),
                        net.driver,
                        net.internal,
                        labels,
                        ipam=net.ipam,
                    )
            case RemoveNetwork(name=name):
                with contextlib.suppress(NotFound):
                    await self.engine.remove_network(name)
            case Kill(container=c, remove_image=remove_image):
                await self.engine.kill_and_remove(c.id)
                if remove_image and c.image_docker_id:
                    await self._remove_image(c.image_docker_id)
            case Start(app=app, service=service):
                await self._start(app, service, current)
            case StartContainer(container=c):
                await self.engine.start(c.id)
            case StopContainer(container=c):
                await self.engine.stop(c.id)
            case UpdateMetadata(container=c, app=app, service=service):
                assert app.release is not None
                await self.engine.rename(
                    c.id,
                    container_name(
                        service.name, service.image_id, app.release.id, app.release.uuid
                    ),
                )
            case RemoveImage(image_id=image_id):
                await self._remove_image(image_id)
            case Pull():  # pulls run concurrently, before the other steps (`run`)
                raise AgentError(f"{describe(step)}: a pull is not applied one by one")
            case _:
                assert_never(step)
        log.info("step_done", step=describe(step), kind=step.kind.value, **subject(step))
        self._bus.publish(StepDone(*step_fields(step)))

    async def _start(self, app: AppSpec, service: ServiceSpec, current: CurrentState) -> None:
        assert app.release is not None
        lock_dir = service_lock_dir(self.device.lock_dir, app.id, service.name)
        await asyncio.to_thread(_make_lock_dir, lock_dir)
        # a handover-complete left from an earlier hand-over would end the next one at once
        await asyncio.to_thread(clear_handover, self.device.lock_dir, app.id, service.name)
        networks = frozenset(n.name for n in current.networks)
        spec = spec_on_engine(app, service, self.device, networks)  # balena's networks too
        supnet = self.supervisor_network
        if (
            supnet is not None
            and supnet.config.name in spec.extra_networks
            and not await supnet.ensure()  # the engine could not make it at start-up
        ):
            raise NotFound(f"supervisor network {supnet.config.name} is not there yet")
        if spec.features_left_out:  # the host lacks what a feature label asks for
            log.warning(
                "feature_left_out",
                app=app.name,
                service=service.name,
                left_out=list(spec.features_left_out),
            )
        mode = spec.host_config.get("network_mode")
        if isinstance(mode, str) and mode.startswith("service:"):
            peer = mode.split(":", 1)[1].strip()
            match = next(
                (
                    c
                    for c in current.containers
                    if c.app_uuid == app.uuid and c.service_name == peer and c.running
                ),
                None,
            )
            if match is None:
                raise NotFound(f"network_mode {mode}: service {peer} has no running container")
            mode = f"container:{match.id}"
        try:
            container_id = await self.engine.create_container(spec, mode)
        except Conflict:
            # a container of that name exists (a crash between create and start): reuse it
            stale = next((c for c in current.containers if c.name == spec.name), None)
            if stale is None:
                raise
            container_id = stale.id
        if service.running:
            await self.engine.start(container_id)

    async def _remove_image(self, image_id: str) -> None:
        try:
            await self.engine.remove_image(image_id)
        except NotFound:
            pass
        except Conflict as exc:
            # still used by something we don't own: stop managing it rather than retry forever
            log.warning("image_in_use_kept", image_id=image_id[:19], error=str(exc))
        self.images.discard(image_id)


def _make_lock_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _take_app_locks(lock_dir: Path, app_id: int, names: set[str]) -> AgentLocks:
    """The app's lock on these services and on every other service dir it has (in a thread:
    the lock dir is the containers' ground, symlinked dirs are not walked into)."""
    app_dir = lock_dir / str(app_id)
    try:
        with os.scandir(app_dir) as entries:
            others = {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    except OSError:
        others = set()
    return AgentLocks.take(lock_dir, app_id, names | others)


async def _take_unless_cancelled(lock_dir: Path, app_id: int, names: set[str]) -> AgentLocks:
    """`_take_app_locks` in a worker thread. Cancelled meanwhile (a stop, a newer pass), the
    thread still finishes: what it took is released, never left behind to look like the app's
    lock to the next pass (which would then wait on it for ever)."""
    taking = asyncio.ensure_future(asyncio.to_thread(_take_app_locks, lock_dir, app_id, names))
    try:
        return await asyncio.shield(taking)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            locks = await taking
            await asyncio.to_thread(locks.release)
        raise
