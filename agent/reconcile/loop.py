"""The apply loop: read the engine, plan, execute, repeat until the target is reached.

A newer target cancels work in flight (pulls are aborted through their cancel flag) and the
next pass plans against it. Failing passes back off; a release whose images keep failing to
pull is given up (`aborted`) after the configured number of attempts, while the running
release keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import structlog

from agent.engine.adopt import Judgement, adopt
from agent.engine.port import CONNECTED, EnginePort
from agent.errors import AgentError, EngineError, InsufficientSpace
from agent.events.bus import Bus
from agent.events.kinds import (
    DownloadProgress,
    ReleaseAborted,
    UpdateLockHeld,
    UpdateLockOverridden,
    UpdateLockReleased,
)
from agent.locks import (
    EntryKind,
    LockHolder,
    clear_own_stale_locks,
    handover_signalled,
    held_locks,
    holder_fields,
    remove_app_locks,
)
from agent.model import CurrentState, TargetState, UpdateStatus
from agent.model.update_status import SETTLED
from agent.reconcile.executor import Executor, ManagedImages
from agent.reconcile.planner import plan as make_plan
from agent.reconcile.steps import Plan, PlanContext, Pull, describe, step_app_id
from agent.reconcile.views import log_skipped, service_views
from agent.reconcile.window_gate import MANUAL_REASON, OPEN, Verdict
from agent.retry import Backoff
from agent.status.board import StatusBoard
from agent.waits import wait_for

log = structlog.get_logger("agent.reconcile")

LOCK_WATCH_S = 0.5  # how often lock files are looked at while an update waits for them
# converged: look at the engine again this often. Only a safety net: the engine's events for
# supervised containers (die, destroy, oom) wake the loop at once (`watch_engine`).
RECHECK_S = 300.0
EVENTS_RETRY_S = 5.0  # the event stream broke (engine restarting): reconnect after this
WAITING_S = 0.5  # waiting on something outside (a healthcheck, a dependency): engine recheck
APPLY_REQUEST_S = 120.0  # POST /v1/update lets a `manual` window apply for this long
HANDOVER_WATCH_S = 0.1  # meanwhile, how often handover-complete is looked for


class Reconciler:
    def __init__(
        self,
        engine: EnginePort,
        executor: Executor,
        status: StatusBoard,
        images: ManagedImages,
        lock_dir: Path,
        override_lock: Callable[[], bool],
        max_pull_attempts: int = 5,
        window: Callable[[], Verdict] | None = None,
        bus: Bus | None = None,
    ) -> None:
        """`bus`: the agent's, told of download progress and update locks (a bus of its own
        when None)."""
        self._engine = engine
        self._bus = bus if bus is not None else Bus()
        self._executor = executor
        self._status = status
        self._images = images
        self._lock_dir = lock_dir
        self._override_lock = override_lock
        self._max_pull_attempts = max_pull_attempts
        self._target: TargetState | None = None
        self._generation = 0
        self._wake = asyncio.Event()
        self._cancel = threading.Event()
        self._force_once = False
        self._window = window
        # POST /v1/update: a `manual` window applies the release (downloaded, or brought by
        # the poll the request triggers) until a pass converges after using it
        self._apply_until = 0.0
        self._apply_used = False
        # a forced POST /v1/update (not a forced restart or service action) overrides the window
        self._window_forced = False
        self._hold_logged: str | None = None
        self.window = OPEN  # the update window's verdict on the latest pass
        self._pull_failures: dict[str, int] = {}
        self._pull_errors: dict[str, str] = {}  # release uuid -> latest pull error
        # app uuid -> why a step of the last pass failed (e.g. the engine refused a value)
        self._step_errors: dict[str, str] = {}
        self._judged: dict[str, tuple[str, ...]] = {}  # takeover verdicts logged, by container
        self.aborted: dict[str, str] = {}
        # set by the rollback controller (agent/reconcile/rollback.py): app uuid -> (failed
        # release, reason) while its previous release is back in its place; failed releases
        # with nothing to go back to (release uuid -> reason); images kept for a rollback
        self.rolled_back: dict[str, tuple[str, str]] = {}
        self.failed_releases: dict[str, str] = {}
        self.keep_images: frozenset[str] = frozenset()
        self._progress: dict[str, int] = {}
        self._locks_seen: dict[int, tuple[tuple[str, str], ...]] = {}
        self._backoff = Backoff(base_s=1.0, cap_s=60.0)
        self.last_plan: Plan | None = None
        self._waiting_logged: tuple[str, ...] = ()
        self.last_pass_at: float | None = None
        self.last_error: str | None = None
        self.converged = asyncio.Event()  # set whenever the engine matches the target
        self.busy_since: float | None = None  # unix time the running pass began (health)
        self._pass_apps: set[str] | None = None  # app uuids the running pass executes steps for
        self._cancelled_generation = -1  # the generation a cancel (POST /v1/update) began
        # the lock and hand-over files the latest pass planned with (a wait compares to these)
        self._files_seen: tuple[frozenset[Path], frozenset[tuple[int, str]]] | None = None

    @property
    def target(self) -> TargetState | None:
        return self._target

    def set_target(self, target: TargetState) -> None:
        if target == self._target:
            return
        log_skipped(target, self._target)
        self._target = target
        self._generation += 1
        self._cancel.set()  # abandon pulls for the older target
        self.converged.clear()
        self._wake.set()

    def cancel_apply(self) -> bool:
        """`POST /v1/update {"cancel": true}`: abandon the pass in flight, as the reference
        aborts its running apply. Its pulls stop (through their cancel flag; the engine drops
        what it had not finished), no step of it is taken any further, the running release
        keeps running, and the next pass plans afresh against the target then in force.
        True when a pass was in flight."""
        busy = self.busy_since is not None
        self._generation += 1  # the running pass sees it and ends without counting failures
        self._cancelled_generation = self._generation
        self._cancel.set()
        self.converged.clear()
        self._wake.set()
        log.info("apply_cancelled", in_flight=busy)
        return busy

    def request_apply(self, force: bool) -> None:
        """POST /v1/update: a `manual` update window lets the downloaded release apply; `force`
        (as the CLI's) applies it outside the window too."""
        self._apply_until, self._apply_used = time.time() + APPLY_REQUEST_S, False
        self._window_forced = self._window_forced or force
        self.wake(force=force)

    def _window_verdict(self) -> Verdict:
        """The update window's say on this pass; a forced update overrides it, a requested
        one (POST /v1/update) overrides `manual`."""
        if self._window is None:
            return OPEN
        verdict = self._window()
        if verdict.hold is not None and self._window_forced:
            verdict = replace(verdict, hold=None)
        elif verdict.hold == MANUAL_REASON and time.time() < self._apply_until:
            self._apply_used = True
            verdict = replace(verdict, hold=None)
        if verdict.hold != self._hold_logged:
            self._hold_logged = verdict.hold
            if verdict.hold is None:
                log.info("update_window_open", setting=verdict.setting)
            else:
                log.info("update_window_hold", setting=verdict.setting, reason=verdict.hold)
        return verdict

    def wake(self, force: bool = False, *, recheck: bool = False) -> None:
        """Run a pass now. `recheck`: until that pass has looked at the engine again, the
        state is not `converged` (`appState: applying`), as the reference's apply is in
        progress from its trigger on: a client that changed the engine and posts its target
        (the balena CLI's livepush removes a container, then posts) waits for that pass."""
        if force:
            self._force_once = True
        if recheck:
            self.converged.clear()
        self._wake.set()

    async def watch_engine(self) -> None:
        """Wake the loop when a supervised container dies or is removed on the engine, so a
        crashed or deleted service is seen at once rather than at the next recheck. After the
        stream was down (engine restarting), the reconnect wakes it too: events were missed."""
        reconnect = False
        while True:
            try:
                async for action in self._engine.container_events():
                    if action == CONNECTED:
                        if reconnect:
                            self._wake.set()
                        continue
                    log.debug("engine_event", action=action)
                    self._wake.set()
            except EngineError as exc:
                log.debug("engine_events_unavailable", error=str(exc))
            reconnect = True
            await asyncio.sleep(EVENTS_RETRY_S)

    async def run(self) -> None:
        try:
            for path in await asyncio.to_thread(clear_own_stale_locks, self._lock_dir):
                log.warning("stale_lock_removed", path=str(path))
        except Exception as exc:  # odd entries in the lock dir: the passes deal with them
            log.error("stale_lock_cleanup_failed", error=repr(exc), exc_info=exc)
        failures = 0
        while True:
            self._wake.clear()
            if self._target is None:
                await self._wake.wait()
                continue
            delay: float
            self.busy_since = time.time()
            self._pass_apps = None
            crash: str | None = None
            try:
                done, failed = await self._pass()
                self.last_error = None
            except EngineError as exc:
                done, failed = False, True
                self.last_error = str(exc)
                log.error("engine_unavailable", error=str(exc))
            except Exception as exc:  # anything else fails this pass only, never the loop
                done, failed = False, True
                crash = self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("apply_pass_failed", error=crash, exc_info=exc)
            finally:
                self.busy_since = None
            if failed:
                failures += 1
                delay = self._backoff.delay(failures)
                log.info("apply_retry_scheduled", attempt=failures, retry_in_s=round(delay, 1))
                if crash is not None:
                    self._report_crash(crash, delay)
            else:
                failures = 0
                delay = RECHECK_S if done else 0.0
                if not done and self.last_plan is not None and not self.last_plan.steps:
                    # waiting: on a lock only, the files alone can end it; on a healthcheck, a
                    # dependency or a hand-over, look at the engine again every WAITING_S and at
                    # the files (handover-complete) in between
                    try:
                        if _only_window_held(self.last_plan):  # till it opens, or a wake
                            with contextlib.suppress(TimeoutError):
                                timeout = self.window.recheck_s
                                await wait_for(self._wake.wait(), timeout=timeout)
                        elif _only_lock_blocked(self.last_plan):
                            await self._wait_for_file_change(RECHECK_S, LOCK_WATCH_S)
                        else:
                            await self._wait_for_file_change(WAITING_S, HANDOVER_WATCH_S)
                    except Exception as exc:  # the lock dir can't be read: look again later
                        log.error("lock_watch_failed", error=repr(exc), exc_info=exc)
                        await asyncio.sleep(WAITING_S)
                    continue
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._wake.wait(), timeout=delay)

    async def _pass(self) -> tuple[bool, bool]:
        """One read-plan-execute round. Returns (converged, had_failures)."""
        target = self._target
        assert target is not None
        generation = self._generation
        self._cancel = threading.Event()
        current = await self._engine.current_state(frozenset(self._images.ids))
        # containers balena's supervisor made: those equal to their target service are ours
        if any(c.engine_config is not None for c in current.containers):
            # (off the loop: a container spec and a comparison per container of theirs)
            device = self._executor.device
            current, judged = await asyncio.to_thread(adopt, current, target, device)
            self._log_takeover(judged)
        locks = await asyncio.to_thread(held_locks, self._lock_dir)
        handed_over = await asyncio.to_thread(handover_signalled, self._lock_dir)
        self._files_seen = (_lock_paths(locks), handed_over)  # what this pass planned with
        self._log_locks(locks)
        force = self._override_lock() or self._force_once
        self.window = self._window_verdict()
        ctx = PlanContext(
            hold_apply=self.window.hold,
            hold_exempt=frozenset(self.rolled_back),  # a failed release goes back at once
            locked_apps=frozenset(locks),
            force=force,
            aborted={**self.aborted, **self.failed_releases},
            now=time.time(),
            handover_done=handed_over,
            keep_images=self.keep_images,
        )
        plan = make_plan(current, target, ctx)
        self.last_plan = plan
        self.last_pass_at = time.time()
        if force and locks:
            await self._override_locks(plan, locks)
        self._publish(plan, current, target, locks)
        waiting = tuple(r for a in plan.apps.values() for r in a.waiting_on)
        if waiting != self._waiting_logged:
            self._waiting_logged = waiting
            if waiting:
                log.info("apply_waiting", reasons=list(waiting))
        if not plan.steps:
            # a target that arrived during this pass was not what it planned for
            if plan.converged and generation == self._generation:
                self._force_once = self._window_forced = False
                if self._apply_used:
                    self._apply_until, self._apply_used = 0.0, False
                self.converged.set()
            return plan.converged and generation == self._generation, False
        self.converged.clear()  # applying: a container went or changed under a converged state
        log.info("apply_pass", steps=[describe(s) for s in plan.steps])
        # if executing raises, these apps are the ones it was working on
        ids = {app_id for step in plan.steps if (app_id := step_app_id(step)) is not None}
        pulls = {step.app_uuid for step in plan.steps if isinstance(step, Pull)}
        touched = {u for u, a in target.apps.items() if a.id in ids or u in pulls}
        self._pass_apps = touched or None
        failures = await self._executor.run(plan, current, self._on_progress, self._cancel)
        if generation != self._generation:
            if self._cancelled_generation == self._generation:
                log.info("apply_pass_cancelled")  # POST /v1/update {cancel}
            else:
                log.info("target_changed_mid_apply")
            return False, False
        step_errors: dict[str, str] = {}
        uuids = {a.id: u for u, a in target.apps.items()}
        for failure in failures:
            if isinstance(failure.step, Pull):
                self._count_pull_failure(target, failure.step, failure.error)
            elif (uuid := uuids.get(step_app_id(failure.step) or 0)) is not None:
                error = f"{describe(failure.step)} failed: {failure.error} (retrying)"
                step_errors.setdefault(uuid, error)
                self._status.set_reason(uuid, step_errors[uuid])
        self._step_errors = step_errors
        return False, bool(failures)

    def _log_takeover(self, judged: tuple[Judgement, ...]) -> None:
        """Each container another supervisor made, once per verdict: adopted as it runs, or
        to be replaced for the settings that differ from its target service."""
        for j in judged:
            if self._judged.get(j.container) == j.differences:
                continue
            self._judged[j.container] = j.differences
            if j.adopted:
                log.info("takeover_adopted", container=j.container, service=j.service)
            else:
                log.info(
                    "takeover_differs",
                    container=j.container,
                    service=j.service,
                    differences=list(j.differences),
                )

    def _report_crash(self, error: str, delay: float) -> None:
        """A pass raised something unexpected: say so in the status of the apps it was
        working on (all target apps when it failed before it knew), until a pass succeeds."""
        target = self._target
        if target is None:
            return
        reason = f"apply failed: {error} (retrying in {delay:.0f}s)"
        for uuid, app in target.apps.items():
            if self._pass_apps is not None and uuid not in self._pass_apps:
                continue
            if app.rejection:
                continue
            self._status.ensure_app(uuid, app.id, app.name, app.release_uuid)
            self._status.set_reason(uuid, reason)

    async def _override_locks(self, plan: Plan, locks: dict[int, list[LockHolder]]) -> None:
        """A forced update: remove the locks of the apps this plan is about to touch."""
        touched = {app_id for step in plan.steps if (app_id := step_app_id(step)) is not None}
        for app_id in sorted(touched & locks.keys()):
            for holder in await asyncio.to_thread(remove_app_locks, self._lock_dir, app_id):
                log.warning("lock_overridden", **holder_fields(holder))
                self._bus.publish(
                    UpdateLockOverridden(holder.app_id, holder.service, str(holder.path))
                )

    async def _wait_for_file_change(self, timeout: float, tick: float) -> None:
        """Wait up to `timeout` for a wake-up or a change of the lock and hand-over files
        (cheap stats every `tick`, no engine calls), so a released lock or a handover-complete
        starts the next pass at once. Compared with what the pass saw, not with a fresh look:
        a lock released between the pass's read and this wait ends it at once too."""
        before = self._files_seen
        if before is None:
            before = await asyncio.to_thread(_watched_files, self._lock_dir)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), timeout=min(tick, left))
                return
            if await asyncio.to_thread(_watched_files, self._lock_dir) != before:
                return

    def _count_pull_failure(self, target: TargetState, step: Pull, exc: AgentError) -> None:
        app = target.apps.get(step.app_uuid)
        if app is None or app.release_uuid is None:
            return
        release = app.release_uuid
        error = str(exc)
        if isinstance(exc, InsufficientSpace):
            # not the registry's fault, and freeing space fixes it: wait, never give up
            self._pull_errors[release] = error
            return
        count = self._pull_failures.get(release, 0) + 1
        self._pull_failures[release] = count
        self._pull_errors[release] = (
            f"pull failed ({count}/{self._max_pull_attempts}), retrying: {error}"
        )
        if count >= self._max_pull_attempts and release not in self.aborted:
            reason = f"gave up after {count} failed pulls: {error}"
            self.aborted[release] = reason
            log.error("release_aborted", app=app.name, release=release, reason=reason)
            self._bus.publish(ReleaseAborted(app.name, release, reason))

    def _on_progress(self, step: Pull, percent: int, nbytes: int) -> None:
        previous = self._progress.get(step.image, -1)
        self._progress[step.image] = percent
        if percent // 10 != previous // 10:  # a log line per 10 %, not per chunk
            log.info(
                "download_progress",
                app_uuid=step.app_uuid,
                services=list(step.services),
                image=step.image,
                percent=percent,
                bytes=nbytes,
            )
        self._bus.publish(DownloadProgress(step.app_uuid, step.image, percent, nbytes))
        self._status.set_download_progress(step.app_uuid, step.services, percent)

    def _publish(
        self,
        plan: Plan,
        current: CurrentState,
        target: TargetState,
        locks: dict[int, list[LockHolder]],
    ) -> None:
        for uuid, app in target.apps.items():
            self._status.ensure_app(
                uuid, app.id, app.name, app.release_uuid, app.is_host, app.runs_nothing
            )
            holders = sorted(locks.get(app.id, []), key=lambda h: (h.since, h.service))
            self._status.set_lock(
                uuid, holders[0].service if holders else None, holders[0].since if holders else None
            )
            running = {c.release_uuid for c in current.app_containers(uuid)}
            if len(running) == 1:
                self._status.set_current_release(uuid, next(iter(running)))
            app_plan = plan.apps.get(uuid)
            if app_plan is None:
                continue
            reason = app_plan.reason or self._step_errors.get(uuid)
            if app_plan.status is UpdateStatus.DOWNLOADING and app_plan.release_uuid:
                reason = self._pull_errors.get(app_plan.release_uuid)
            if app_plan.blocked_by_lock and holders:
                reason = f"update lock held by {holders[0].service}"
                if holders[0].kind is not EntryKind.FILE:
                    reason += f" (a {holders[0].kind} at {holders[0].path.name})"
            back = self.rolled_back.get(uuid)
            if back is not None:  # the failed release is reported, its predecessor applied
                if app_plan.status is UpdateStatus.DONE:
                    self._status.set_current_release(uuid, app_plan.release_uuid, overwrite=True)
                elif reason:
                    reason = f"{back[1]}; rolling back to {app_plan.release_uuid}: {reason}"
                self._status.set_update_status(
                    uuid, back[0], UpdateStatus.ABORTED, reason if reason else back[1]
                )
            else:
                self._status.set_update_status(uuid, app_plan.release_uuid, app_plan.status, reason)
            if app_plan.status is not UpdateStatus.REJECTED:
                self._status.set_services(
                    uuid, service_views(app, current, app_plan, self._progress)
                )
        self._status.forget_apps(set(target.apps))

    def _log_locks(self, locks: dict[int, list[LockHolder]]) -> None:
        seen = {
            app_id: tuple(sorted((h.service, str(h.kind)) for h in holders))
            for app_id, holders in locks.items()
        }
        if seen == self._locks_seen:
            return
        for app_id, holders in locks.items():
            if seen[app_id] != self._locks_seen.get(app_id):
                for holder in holders:
                    log.info("lock_held", **holder_fields(holder))
                    self._bus.publish(UpdateLockHeld(app_id, holder.service, str(holder.path)))
                    if holder.kind is not EntryKind.FILE:
                        # not a lock file but something at its name: held all the same
                        log.warning("lock_entry_unexpected", **holder_fields(holder))
        for app_id in self._locks_seen.keys() - seen.keys():
            log.info("lock_released", app_id=app_id)
            self._bus.publish(UpdateLockReleased(app_id))
        self._locks_seen = seen


def _only_window_held(plan: Plan) -> bool:
    """True when every app not settled is downloaded and held by the update window."""
    pending = [a for a in plan.apps.values() if a.status not in SETTLED]
    return bool(pending) and all(a.held for a in pending)


def _only_lock_blocked(plan: Plan) -> bool:
    """True when the only thing left is apps waiting for their update lock."""
    pending = [a for a in plan.apps.values() if a.status not in SETTLED]
    return bool(pending) and all(a.blocked_by_lock and not a.waiting_on for a in pending)


def _lock_paths(locks: dict[int, list[LockHolder]]) -> frozenset[Path]:
    return frozenset(h.path for holders in locks.values() for h in holders)


def _watched_files(lock_dir: Path) -> tuple[frozenset[Path], frozenset[tuple[int, str]]]:
    return _lock_paths(held_locks(lock_dir)), handover_signalled(lock_dir)
