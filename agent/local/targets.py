"""Target intake: every target document — the cloud's, the persisted one, a local-mode post, a
rollback's — comes in here, is validated, checked against the device's contracts, has its
config vars applied, and is handed to `TargetIntake` (agent/local/intake.py), which picks the
one in force for the apply loop.

A malformed document is refused whole (the running apps are untouched); a malformed app is
rejected alone. The cloud's target is persisted by the poller under `TARGET_KEY`, with its ETag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import structlog

from agent.errors import TargetStateError
from agent.events.bus import Bus
from agent.events.kinds import AppRejected, ContractServicesNotRun, TargetAccepted
from agent.local.fleetvars import FleetVars
from agent.local.intake import TargetIntake
from agent.model import TargetState, parse_target
from agent.model.contracts import DeviceContract, apply_contracts
from agent.model.source import TargetSource
from agent.store import Store

log = structlog.get_logger("agent.local")

TARGET_KEY = "target"  # the cloud's last accepted target: {"etag": ..., "body": ...}


class TargetErrors(Protocol):
    """Where a refused document's reason is shown (the status board)."""

    target_error: str | None


class TargetService:
    def __init__(
        self,
        device_uuid: str,
        contract: DeviceContract,
        store: Store,
        intake: TargetIntake,
        fleet: FleetVars,
        errors: TargetErrors,
        adjust: Callable[[Any], Any] = lambda body: body,
        new_apps: Callable[[set[int]], None] = lambda _ids: None,
        bus: Bus | None = None,
    ) -> None:
        """`adjust(body)`: the cloud's document with rolled back apps on their previous release
        (agent/reconcile/rollback.py); `new_apps(ids)`: the apps of an accepted target (their
        API keys are made); `bus`: the agent's, told of accepted targets and rejected apps (a
        bus of its own when None)."""
        self._bus = bus if bus is not None else Bus()
        self._uuid = device_uuid
        self._contract = contract
        self._store = store
        self._intake = intake
        self._fleet = fleet
        self._errors = errors
        self._adjust = adjust
        self._new_apps = new_apps

    @property
    def local_mode(self) -> bool:
        return self._fleet.local_mode

    @property
    def base(self) -> TargetState | None:
        """The target in force, without the API's overrides."""
        return self._intake.base

    def empty_app(self, app_uuid: str, empty: bool) -> None:
        """Hold the app without services (an API restart or purge), or let it run again."""
        self._intake.empty_app(app_uuid, empty)

    def accept(self, body: Any, source: TargetSource) -> bool:
        """Validate a target document and hand it to the apply loop; False when refused."""
        if source != TargetSource.LOCAL:  # a failed release's app back on its previous release
            body = self._adjust(body)
        try:
            target = parse_target(body, self._uuid)
        except TargetStateError as exc:
            self._errors.target_error = str(exc)
            log.error("target_invalid", source=source, error=str(exc))
            return False
        self._errors.target_error = None
        checked = apply_contracts(target, body, self._contract)  # unmet: rejected / not run
        target = checked.target
        for app_name, services in checked.not_run.items():
            log.warning("contract_services_not_run", app=app_name, services=list(services))
            self._bus.publish(ContractServicesNotRun(app_name, tuple(services)))
        self._rejections(target)
        local = source == TargetSource.LOCAL
        self._fleet.apply(self._intake.local_config_vars(target) if local else target.config)
        names = sorted(a.name for a in target.apps.values())
        log.info("target_accepted", source=source, apps=names)
        self._bus.publish(TargetAccepted(str(source), tuple(names)))
        self._new_apps({app.id for app in target.apps.values()})
        self._intake.accept(target, source, self.local_mode, body if local else None)
        return True

    def accept_local(self, document: dict[str, Any]) -> str | None:
        """A v3 document posted in local mode: applied whole, or refused with the reason (no
        app of it is applied when one is invalid)."""
        try:
            target = parse_target(document, self._uuid)
        except TargetStateError as exc:
            return str(exc)
        rejected = [a.rejection for a in target.apps.values() if a.rejection]
        if rejected:
            return "; ".join(r for r in rejected if r)
        if self.accept(document, TargetSource.LOCAL):
            return None
        return self._errors.target_error

    def restore(self, persisted: Any) -> None:
        """At start: the persisted cloud document (the poller's `load_saved`, or None), then a
        saved local target when in local mode."""
        if persisted is not None:
            self.accept(persisted, TargetSource.PERSISTED)
        saved_local = self._intake.saved_local()
        if saved_local is not None and self.local_mode:
            self.accept(saved_local, TargetSource.LOCAL)

    def document(self) -> dict[str, Any] | None:
        """The target in force as the device's entry of a v3 document {name, config, apps}."""
        saved = self._intake.saved_local() if self.local_mode else None
        if saved is None:
            saved = (self._store.get(TARGET_KEY) or {}).get("body")
        entry = saved.get(self._uuid) if isinstance(saved, dict) else None
        return entry if isinstance(entry, dict) else None

    def _rejections(self, target: TargetState) -> None:
        _log_rejections(target)
        for app in target.apps.values():
            if app.rejection:
                self._bus.publish(AppRejected(app.name, app.uuid, app.release_uuid, app.rejection))


def _log_rejections(target: TargetState) -> None:
    for app in target.apps.values():
        if app.rejection:
            log.error(
                "app_rejected",
                app=app.name,
                app_uuid=app.uuid,
                release=app.release_uuid,
                reason=app.rejection,
            )
        elif app.release is not None:
            for svc in app.release.services.values():
                if svc.composition.ignored_keys:
                    log.warning(
                        "compose_keys_ignored",
                        app=app.name,
                        service=svc.name,
                        keys=list(svc.composition.ignored_keys),
                    )
