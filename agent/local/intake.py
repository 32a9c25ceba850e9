"""Which target the apply loop follows, and the local API's temporary overrides of it.

- Normally the cloud's target. In local mode, the target posted to `POST /v2/local/target-state`
  (persisted); cloud targets are still fetched (the poll is the heartbeat) and kept, but not
  applied. Until a local target is posted, the cloud's keeps running; leaving local mode drops
  the local target and the cloud's applies again.
- An override, as the reference's "intermediate target": an app being restarted or purged
  through the API is held without services until its containers are gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from agent.model import AppSpec, TargetState
from agent.model.source import TargetSource
from agent.store import LatestWriter, Store

log = structlog.get_logger("agent.local")

STORE_KEY = "local-target"
LOCAL_MODE_VARS = ("BALENA_SUPERVISOR_LOCAL_MODE", "RESIN_SUPERVISOR_LOCAL_MODE")


class TargetIntake:
    def __init__(self, store: Store, apply: Callable[[TargetState], None]) -> None:
        self._store = store
        self._saved = LatestWriter(  # the posted local target, written off the event loop
            store, STORE_KEY, lambda exc: log.error("local_target_persist_failed", error=str(exc))
        )
        self._apply = apply
        self.cloud: TargetState | None = None
        self.local: TargetState | None = None
        self.local_mode = False
        self._emptied: set[str] = set()  # app uuids held without services

    # --- intake -------------------------------------------------------------------------------

    def saved_local(self) -> Any:
        return self._store.get(STORE_KEY)

    async def flush(self) -> None:
        """Wait until the posted local target is on disk (shutdown)."""
        await self._saved.flush()

    def local_config_vars(self, target: TargetState) -> dict[str, str]:
        """A local target's config vars, except local mode itself, which stays as the cloud
        (or config.json) says: a local target can't switch local mode off."""
        config = {k: v for k, v in target.config.items() if k not in LOCAL_MODE_VARS}
        if self.cloud is not None:
            config.update({k: v for k, v in self.cloud.config.items() if k in LOCAL_MODE_VARS})
        return config

    def accept(
        self, target: TargetState, source: TargetSource, local_mode: bool, body: Any = None
    ) -> None:
        """A parsed target from `source` (cloud | persisted | local). `body` (local only) is
        the v3 document persisted so a restart keeps the local target."""
        left = self.local_mode and not local_mode
        self.local_mode = local_mode
        if source == TargetSource.LOCAL:
            self.local = target
            if body is not None:
                self._saved.write(body)
        else:
            self.cloud = target
            if local_mode:
                log.info("cloud_target_deferred", reason="local mode")
        if left and self.local is not None:
            log.info("local_mode_left", dropped_apps=sorted(self.local.apps))
            self.local = None
            self._saved.delete()
        self.push()

    @property
    def base(self) -> TargetState | None:
        """The target in force, without the API's overrides."""
        if self.local_mode and self.local is not None:
            return self.local
        return self.cloud

    # --- overrides ----------------------------------------------------------------------------

    def empty_app(self, app_uuid: str, empty: bool) -> None:
        if empty:
            self._emptied.add(app_uuid)
        else:
            self._emptied.discard(app_uuid)
        self.push()

    def effective(self) -> TargetState | None:
        base = self.base
        if base is None:
            return None
        if not self._emptied & base.apps.keys():
            return base
        apps = {
            uuid: _emptied(app) if uuid in self._emptied else app for uuid, app in base.apps.items()
        }
        return replace(base, apps=apps)

    def push(self) -> None:
        target = self.effective()
        if target is not None:
            self._apply(target)


def _emptied(app: AppSpec) -> AppSpec:
    if app.release is None:
        return app
    return replace(app, release=replace(app.release, services={}))
