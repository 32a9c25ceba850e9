"""A v3 target document parsed whole: each app (agent/model/target.py `parse_app`), with the
services the agent does not run set aside (agent/model/skipped.py has the rules), and apps
that share an id rejected."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.errors import TargetStateError
from agent.model.checks import _scalar_str
from agent.model.skipped import SkippedService, host_app_services, service_skip
from agent.model.target import AppSpec, ServiceSpec, TargetState, parse_app


def parse_target(body: Any, device_uuid: str) -> TargetState:
    """Parse a v3 target state document for `device_uuid`."""
    if not isinstance(body, dict):
        raise TargetStateError(f"target state must be a JSON object, got {type(body).__name__}")
    if device_uuid not in body:
        keys = ", ".join(sorted(map(str, body))[:3]) or "nothing"
        raise TargetStateError(f"target state has no entry for device {device_uuid} (has {keys})")
    device = body[device_uuid]
    if not isinstance(device, dict):
        raise TargetStateError("device entry of the target state must be an object")
    config = device.get("config", {})
    if not isinstance(config, dict):
        raise TargetStateError("target 'config' must be an object of strings")
    apps_raw = device.get("apps", {})
    if not isinstance(apps_raw, dict):
        raise TargetStateError("target 'apps' must be an object keyed by app uuid")
    apps = _unique_ids(
        {str(u): split_app(parse_app(str(u), raw), raw) for u, raw in apps_raw.items()}
    )
    return TargetState(
        device_uuid=device_uuid,
        name=str(device.get("name", "")),
        config={str(k): _scalar_str(v) for k, v in config.items()},
        apps=apps,
    )


def _unique_ids(apps: dict[str, AppSpec]) -> dict[str, AppSpec]:
    """Apps sharing an id would share engine objects (`{appId}_default`...): all rejected."""
    by_id: dict[int, list[str]] = {}
    for uuid, app in apps.items():
        if app.id > 0:
            by_id.setdefault(app.id, []).append(uuid)
    for app_id, uuids in by_id.items():
        if len(uuids) > 1:
            for uuid in uuids:
                reason = f"app {apps[uuid].name}: app id {app_id} is shared by apps {sorted(uuids)}"
                apps[uuid] = replace(apps[uuid], release=None, rejection=reason)
    return apps


def split_app(app: AppSpec, raw_app: Any) -> AppSpec:
    """`app` with the services the agent does not run moved from its release to `skipped`."""
    if app.is_host:
        return replace(app, release=None, rejection=None, skipped=host_app_services(raw_app))
    release = app.release
    if release is None:
        return app
    skipped: list[SkippedService] = []
    for name, svc in release.services.items():
        why = service_skip(app.uuid, name, svc.labels)
        if why is not None:
            skipped.append(SkippedService(name, svc.image, *why))
    if not skipped:
        return app
    names = {s.name for s in skipped}
    try:
        kept = {
            name: _without_deps(app.name, svc, names)
            for name, svc in release.services.items()
            if name not in names
        }
    except TargetStateError as exc:
        return replace(app, release=None, rejection=str(exc), skipped=tuple(skipped))
    return replace(app, release=replace(release, services=kept), skipped=tuple(skipped))


def _without_deps(app: str, svc: ServiceSpec, skipped: set[str]) -> ServiceSpec:
    """A dependency on a service that is not run counts as met (as the reference's
    dependenciesMetForServiceStart has it); sharing its network namespace cannot be."""
    mode = svc.composition.network_mode or ""
    if mode.startswith("service:") and mode.removeprefix("service:") in skipped:
        raise TargetStateError(
            f"app {app}: service {svc.name}: network_mode: {mode}, a service the agent does not run"
        )
    deps = svc.composition.depends_on
    if not any(dep in skipped for dep, _ in deps):
        return svc
    kept = tuple((dep, cond) for dep, cond in deps if dep not in skipped)
    return replace(svc, composition=replace(svc.composition, depends_on=kept))
