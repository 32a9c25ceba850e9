"""The planner: from the current and the target state, the steps that can run now.

`plan()` is pure: no I/O, no clock, no randomness, and its output is ordered (by app uuid, then
service name), so the same input always yields the same plan. The executor runs the steps, reads
the engine again and calls `plan()` once more, until a pass yields no steps.

Per target app (see `app_plan.plan_app`):
- rejected → reported, nothing of it touched; aborted release → reported, nothing done;
- images missing → pulled (plus volumes/networks created), and no container of the app touched
  until every image of its release is present (download-then-kill);
- then old, surplus and changed containers are killed, missing ones started once their
  volumes, networks and `depends_on` are satisfied, unchanged ones carried over to the new release
  by `UpdateMetadata`, and `running` honoured; an update lock holds all of that back;
- once done, the app's networks the release no longer needs are removed. Volumes never are.

Apps the agent runs nothing of (host apps, the supervisor's own: `AppSpec.runs_nothing`) are
`done` at once with no steps; their images are never removed.

Apps on the engine but not in the target are killed (unless locked), then their networks
removed. Unused managed images are removed by id once every app is settled.
"""

from __future__ import annotations

from agent.model import CurrentState, TargetState, UpdateStatus, normalize_image_ref
from agent.model.skipped import not_run_reason
from agent.model.update_status import SETTLED
from agent.reconcile.app_plan import EngineIndex, plan_app
from agent.reconcile.steps import (
    AppPlan,
    CreateNetwork,
    CreateVolume,
    Kill,
    Plan,
    PlanContext,
    Pull,
    RemoveImage,
    RemoveNetwork,
    Start,
    StartContainer,
    Step,
    StopContainer,
    UpdateMetadata,
)

# the order steps run in: downloads and creations, kills, starts, in-place changes, cleanup
_RANK: dict[type, int] = {
    Pull: 0,
    CreateVolume: 0,
    CreateNetwork: 0,
    Kill: 1,
    Start: 2,
    UpdateMetadata: 3,
    StartContainer: 3,
    StopContainer: 3,
    RemoveNetwork: 4,
    RemoveImage: 5,
}


def plan(current: CurrentState, target: TargetState, ctx: PlanContext) -> Plan:
    """The steps that can run now to bring `current` towards `target`."""
    idx = EngineIndex.build(current)
    apps: dict[str, AppPlan] = {}
    per_app: dict[str, list[Step]] = {}
    for uuid in sorted(target.apps):
        app = target.apps[uuid]
        if app.runs_nothing:
            # a host app or the supervisor's own: accepted, nothing created, nothing of it
            # (nor anything else because of it) removed; settled at once
            release = app.release.uuid if app.release is not None else app.release_uuid
            reason = not_run_reason(app)
            apps[uuid], per_app[uuid] = AppPlan(uuid, release, UpdateStatus.DONE, reason=reason), []
            continue
        apps[uuid], per_app[uuid] = plan_app(app, idx, ctx)

    removed_steps, removed_left = _removed_apps(current, target, idx, ctx)
    for uuid, steps in removed_steps.items():
        per_app[uuid] = steps

    ordered = [step for uuid in sorted(per_app) for step in per_app[uuid]]
    ordered.sort(key=lambda step: _RANK[type(step)])  # stable: app / service order kept

    if ctx.cleanup_images and not removed_left and all(a.status in SETTLED for a in apps.values()):
        ordered += _unused_images(current, target, ctx.keep_images)
    return Plan(steps=tuple(ordered), apps=apps)


def _removed_apps(
    current: CurrentState, target: TargetState, idx: EngineIndex, ctx: PlanContext
) -> tuple[dict[str, list[Step]], bool]:
    """Steps for apps on the engine that the target no longer has, and whether any of their
    containers are left on the engine."""
    steps: dict[str, list[Step]] = {}
    containers_left = False
    held = ctx.locked_apps if not ctx.force else frozenset()
    for uuid in sorted(current.app_uuids() - target.apps.keys()):
        containers = [c for by_svc in idx.containers.get(uuid, {}).values() for c in by_svc]
        networks = idx.app_networks.get(uuid, ())
        containers_left = containers_left or bool(containers)
        if {c.app_id for c in containers} & held or {n.app_id for n in networks} & held:
            continue  # its update lock is held: nothing of it is touched
        if containers:
            ordered = sorted(containers, key=lambda c: (c.service_name, c.id))
            steps[uuid] = [Kill(c) for c in ordered]
        else:  # networks go once the containers are gone; volumes never do
            steps[uuid] = [RemoveNetwork(n.name, n.app_uuid) for n in networks]

    # networks an older supervisor labelled with an app id only, of an app that is gone
    target_ids = {app.id for app in target.apps.values()}
    used_ids = {c.app_id for c in current.containers}
    for app_id in sorted(idx.legacy_networks):
        if app_id > 0 and app_id not in target_ids | used_ids | held:
            orphans = [RemoveNetwork(n.name, None) for n in idx.legacy_networks[app_id]]
            steps.setdefault("", []).extend(orphans)  # no uuid: sorts before every app
    return steps, containers_left


def _unused_images(
    current: CurrentState, target: TargetState, keep: frozenset[str] = frozenset()
) -> list[Step]:
    """Managed images that no container runs, no target release needs and `keep` does not
    name, removed by id (two releases may share one repository: removing by name could hit
    the one in use)."""
    used_ids = {c.image_docker_id for c in current.containers}
    kept_refs = {normalize_image_ref(c.image) for c in current.containers}
    kept_refs |= {normalize_image_ref(ref) for ref in keep}
    for app in target.apps.values():
        if app.release is not None:
            kept_refs |= {normalize_image_ref(s.image) for s in app.release.services.values()}
        kept_refs |= {normalize_image_ref(s.image) for s in app.skipped if s.image}
    refs: dict[str, set[str]] = {}
    managed: dict[str, bool] = {}
    for image in current.images:  # one entry per id, managed only if every listing says so
        refs.setdefault(image.id, set()).update(image.refs)
        managed[image.id] = managed.get(image.id, True) and image.managed
    return [
        RemoveImage(image_id, tuple(sorted(refs[image_id])))
        for image_id in sorted(refs)
        if managed[image_id] and image_id not in used_ids and not refs[image_id] & kept_refs
    ]
