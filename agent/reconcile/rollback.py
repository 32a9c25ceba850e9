"""Automatic rollback (issue 14, point 1): the shell around the pure probation verdicts.

Design.
- Record (`adjust`, on every cloud target accepted, before it is parsed): per app, the raw
  app entry of the cloud's release (`current`) and of the release that ran before it and
  passed probation (`previous`). When a new release is accepted, `current` becomes
  `previous` only if it passed probation, so a chain of bad releases still goes back to the
  last good one. Persisted in the store under `rollback` (shape in agent/shapes.py).
- Watch (`run`): an app whose `current` release is `done` and not yet judged is on
  probation from the first time it is seen done (persisted, so a restart continues it); its
  containers are listed and inspected through the engine module every `TICK_S` and judged
  (agent/reconcile/probation.py). Passed → `passed` is persisted and the loop is woken: the
  previous release's images, kept until then (`keep_images`, a planner input), are removed.
- Decide: failed → `failed[release] = {app, reason, to}` is written durably first, then the
  app is re-targeted: `adjust` puts the previous release's entry in the failed one's place,
  so the ordinary apply loop brings it back (update locks honoured, named volumes untouched,
  images already there) and a SIGKILL anywhere converges, since the restarted agent reads
  the same decision and the same saved target. The reconciler reports the failed release
  `aborted` with the reason (`rolled_back`). With nothing to go back to (the first release)
  the failed release is an aborted planner input: its containers are left alone.
- Forget: a cloud target naming another release for the app drops its decision; so does a
  forced update (POST /v1/update {"force": true}), which applies the failed release again.
Local mode targets never pass through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import structlog

from agent.engine.port import ProbationEngine
from agent.errors import EngineError
from agent.events.bus import Bus
from agent.events.kinds import ReleaseAborted
from agent.model import UpdateStatus, normalize_image_ref
from agent.reconcile.loop import Reconciler
from agent.reconcile.probation import (
    ServiceObs,
    Thresholds,
    fleet_thresholds,
    judge,
    service_thresholds,
)
from agent.status.board import StatusBoard
from agent.store import LatestWriter, Store

log = structlog.get_logger("agent.rollback")

STORE_KEY = "rollback"
TICK_S = 1.0
IDLE_RECHECK_S = 30.0  # nothing on probation: look again this often even if nothing woke us
REINSPECT_S = 10.0  # a container that looks unchanged in the list is inspected this often
_NS = 1e9


def _release_of(entry: Any) -> str | None:
    releases = entry.get("releases") if isinstance(entry, dict) else None
    if isinstance(releases, dict) and len(releases) == 1:
        key = next(iter(releases))
        return key if isinstance(key, str) else None
    return None


def _images_of(entry: Any) -> set[str]:
    out: set[str] = set()
    for rel in (entry.get("releases") or {}).values():
        for svc in ((rel or {}).get("services") or {}).values():
            if isinstance(svc, dict) and isinstance(svc.get("image"), str):
                out.add(normalize_image_ref(svc["image"]))
    return out


def _entry_ok(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("release"), str)


def load_state(store: Store) -> dict[str, Any]:
    """The persisted record and decisions (agent/shapes.py checks the file's shape)."""
    saved = store.get(STORE_KEY, {}) or {}
    apps = {
        uuid: {**a, "current": {"entry": {}, "passed": False, "since": None, **a["current"]}}
        for uuid, a in (saved.get("apps") or {}).items()
        if _entry_ok(a.get("current")) and (a.get("previous") is None or _entry_ok(a["previous"]))
    }
    failed = {r: f for r, f in (saved.get("failed") or {}).items() if isinstance(f, dict)}
    return {"apps": apps, "failed": failed}


class Rollback:
    def __init__(
        self,
        store: Store,
        engine: ProbationEngine,
        status: StatusBoard,
        reconciler: Reconciler,
        device_uuid: str,
        retarget: Callable[[], object],
        active: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
        bus: Bus | None = None,
    ) -> None:
        """`bus`: the agent's, told of an aborted release (a bus of its own when None)."""
        self._bus = bus if bus is not None else Bus()
        self.active = active  # False in local mode: its releases are not judged
        self._engine = engine
        self._status = status
        self._reconciler = reconciler
        self._uuid = device_uuid
        self._retarget = retarget
        self._clock = clock
        self._writer = LatestWriter(
            store, STORE_KEY, lambda exc: log.error("rollback_persist_failed", error=str(exc))
        )
        self.state = load_state(store)
        self.thresholds = Thresholds()
        self.last_body: Any = None
        self._exits: dict[str, int] = {}  # container id -> its latest exit code seen
        # container id -> (what the list showed, when inspected, what the inspect said)
        self._seen: dict[str, tuple[tuple[Any, ...], float, ServiceObs]] = {}
        self._changed = asyncio.Event()  # a release recorded, forced, passed or failed
        self._publish()

    # --- the target: record, substitute ------------------------------------------------------

    def adjust(self, body: Any) -> Any:
        """Record the cloud's target and return it with each rolled back app's entry replaced
        by its previous release's."""
        entry: Any = body.get(self._uuid) if isinstance(body, dict) else None
        apps = entry.get("apps") if isinstance(entry, dict) else None
        if not isinstance(apps, dict) or not isinstance(entry, dict):
            return body
        self.last_body = body
        self._changed.set()
        config = entry.get("config")
        self.thresholds, errors = fleet_thresholds(config if isinstance(config, dict) else {})
        for error in errors:
            log.error("config_var_invalid", error=error)
        changed = False
        for uuid, app in apps.items():
            changed |= self._record(uuid, app)
        for uuid in set(self.state["apps"]) - set(apps):  # apps gone: their records too
            del self.state["apps"][uuid]
            changed = True
        for release, decision in list(self.state["failed"].items()):
            if decision.get("app") not in self.state["apps"]:
                del self.state["failed"][release]
                changed = True
        if changed:
            self._publish()
        if changed:
            self._save()
        out = body
        for uuid, app_state in self.state["apps"].items():
            decision = self.state["failed"].get(app_state["current"]["release"])
            previous = app_state.get("previous")
            if decision is None or not decision.get("to") or not previous:
                continue
            if out is body:
                out = copy.deepcopy(body)
            out[self._uuid]["apps"][uuid] = copy.deepcopy(previous["entry"])
        return out

    def _record(self, uuid: str, app: Any) -> bool:
        release = _release_of(app)
        if release is None:
            return False
        st = self.state["apps"].get(uuid)
        if st is None:
            self.state["apps"][uuid] = {
                "current": {"release": release, "entry": app, "passed": False, "since": None},
                "previous": None,
            }
            return True
        current = st["current"]
        if current["release"] == release:
            if current.get("entry") != app:
                current["entry"] = app
                return True
            return False
        if current.get("passed"):
            st["previous"] = {"release": current["release"], "entry": current["entry"]}
        st["current"] = {"release": release, "entry": app, "passed": False, "since": None}
        # the cloud names another release: the decisions about this app's are forgotten
        for gone in [r for r, f in self.state["failed"].items() if f.get("app") == uuid]:
            del self.state["failed"][gone]
        self._publish()
        return True

    def force(self) -> None:
        """A forced update: every failed release may be applied again (and judged again)."""
        if not self.state["failed"]:
            return
        for release in self.state["failed"]:
            log.info("rollback_decision_forgotten", release=release, why="forced update")
        self.state["failed"].clear()
        for st in self.state["apps"].values():
            st["current"]["since"] = None
        self._save()
        self._publish()
        if self.last_body is not None:
            self._retarget()

    # --- the watch ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._changed.clear()
            if not self.active() or not self._pending():
                # nothing on probation: no ticks until a release is recorded, passes or fails
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_RECHECK_S):
                        await self._changed.wait()
                continue
            await asyncio.sleep(TICK_S)
            try:
                await self._check()
            except EngineError as exc:
                log.debug("probation_engine_unavailable", error=str(exc))
            except Exception as exc:  # a bad value somewhere: this tick only, never the task
                log.error("probation_check_failed", error=repr(exc), exc_info=exc)

    def _pending(self) -> bool:
        """An app's current release is neither passed nor judged failed yet."""
        return any(
            not st["current"].get("passed") and st["current"]["release"] not in self.state["failed"]
            for st in self.state["apps"].values()
        )

    async def _check(self) -> None:
        target = self._reconciler.target
        if target is None or self.last_body is None:
            return
        for uuid, st in list(self.state["apps"].items()):
            current = st["current"]
            release = current["release"]
            view = self._status.app(uuid)
            app = target.apps.get(uuid)
            if current.get("passed") or release in self.state["failed"] or app is None:
                continue
            if view is None or view.release_uuid != release or app.release_uuid != release:
                continue
            if view.update_status is not UpdateStatus.DONE or app.release is None:
                continue
            now = self._clock()
            if not self.thresholds.enabled:
                self._passed(uuid, release, "rollback off")
                continue
            if current.get("since") is None:
                current["since"] = now
                self._save()
                log.info("probation_started", app_uuid=uuid, release=release)
            observed = await self._observe(uuid, release, app.release.services)
            verdict = judge(observed, current["since"], now, self.thresholds.probation_s)
            if verdict.failure is not None:
                await self._failed(uuid, release, verdict.failure)
            elif verdict.passed:
                self._passed(uuid, release, "probation passed")

    async def _observe(self, uuid: str, release: str, services: Any) -> list[ServiceObs]:
        """What each running service of the release does. A container is inspected (restart
        count, health, start period) only when the list shows it changed (status, health,
        exit code, a `die` event) or its last inspect is `REINSPECT_S` old: a steady release
        costs one list call a tick."""
        containers = await self._engine.containers()
        live = {c.id for c in containers}
        self._exits = {cid: code for cid, code in self._exits.items() if cid in live}
        self._seen = {cid: seen for cid, seen in self._seen.items() if cid in live}
        mine = {
            c.service_name: c
            for c in containers
            if c.app_uuid == uuid and c.release_uuid == release
        }
        now = time.monotonic()
        out: list[ServiceObs] = []
        for name, svc in sorted(services.items()):
            if not svc.running:
                continue
            limits = service_thresholds(self.thresholds, svc.labels)
            c = mine.get(name)
            if c is None:
                out.append(ServiceObs(name, limits, None))
                continue
            key = (c.status, c.health, c.exit_code, self._engine.die_count(c.id))
            seen = self._seen.get(c.id)
            if seen is not None and seen[0] == key and now - seen[1] < REINSPECT_S:
                out.append(dataclasses.replace(seen[2], thresholds=limits))
                continue
            info = await self._engine.inspect_container(c.id)
            if info is None:
                out.append(ServiceObs(name, limits, None))
                continue
            obs = self._inspected(name, limits, c.id, info)
            self._seen[c.id] = (key, now, obs)
            out.append(obs)
        return out

    def _inspected(
        self, name: str, limits: Thresholds, container_id: str, info: dict[str, Any]
    ) -> ServiceObs:
        st = info.get("State") or {}
        health = st.get("Health") or {}
        if st.get("Status") != "running":  # (a running container's ExitCode is 0)
            self._exits[container_id] = int(st.get("ExitCode") or 0)
        else:  # restarted since it last exited: its `die` event kept the code
            died = self._engine.last_exit_code(container_id)
            if died is not None:
                self._exits[container_id] = died
        check = (info.get("Config") or {}).get("Healthcheck") or {}
        return ServiceObs(
            service=name,
            thresholds=limits,
            status=str(st.get("Status") or ""),
            exit_code=self._exits.get(container_id, 0),
            restart_count=int(info.get("RestartCount") or 0),
            health=health.get("Status") if health else None,
            start_period_s=float(check.get("StartPeriod") or 0) / _NS,
            ever_started=not str(st.get("StartedAt") or "").startswith("0001-"),
        )

    def _passed(self, uuid: str, release: str, why: str) -> None:
        self.state["apps"][uuid]["current"]["passed"] = True
        self._save()
        self._publish()
        log.info("probation_passed", app_uuid=uuid, release=release, why=why)
        self._reconciler.wake()  # the previous release's images may go now

    async def _failed(self, uuid: str, release: str, what: str) -> None:
        previous = self.state["apps"][uuid].get("previous")
        to = previous["release"] if previous else None
        if to is not None:
            reason = f"rolled back: {what}"
        else:
            reason = f"failed: {what}; no previous release to go back to"
        self.state["failed"][release] = {"app": uuid, "reason": reason, "to": to}
        self._save()
        await self._writer.flush()  # the decision is on disk before anything is changed
        self._publish()
        view = self._status.app(uuid)
        log.error(
            "release_aborted",
            app=view.name if view else uuid,
            release=release,
            reason=reason,
            rollback_to=to,
        )
        self._bus.publish(ReleaseAborted(view.name if view else uuid, release, reason, to))
        if to is not None:
            log.info("rollback_started", app_uuid=uuid, release=release, to=to)
            self._retarget()
        else:
            self._reconciler.wake()  # a pass shows the release aborted (and stops restarting it)

    # --- the planner's and the reconciler's inputs ---------------------------------------------

    def _publish(self) -> None:
        self._changed.set()
        rolled_back: dict[str, tuple[str, str]] = {}
        aborted: dict[str, str] = {}
        keep: set[str] = set()
        for uuid, st in self.state["apps"].items():
            current, previous = st["current"], st.get("previous")
            decision = self.state["failed"].get(current["release"])
            if decision is not None and decision.get("to") and previous:
                rolled_back[uuid] = (current["release"], str(decision.get("reason")))
            elif decision is not None:
                aborted[current["release"]] = str(decision.get("reason"))
            if previous and not current.get("passed"):
                keep |= _images_of(previous["entry"])
        self._reconciler.rolled_back = rolled_back
        self._reconciler.failed_releases = aborted
        self._reconciler.keep_images = frozenset(keep)

    def _save(self) -> None:
        self._writer.write(self.state)

    async def flush(self) -> None:
        await self._writer.flush()
