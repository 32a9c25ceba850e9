"""Properties of the planner over generated targets and engine states, run against the simulated
engine in sim.py: plan, apply every step of the pass, plan again..."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.model import (
    ContainerState,
    ContainerStatus,
    CurrentState,
    ImageState,
    NetworkState,
    TargetState,
    UpdateStatus,
    VolumeState,
    normalize_image_ref,
)
from agent.model.current import container_name
from agent.reconcile.planner import plan
from agent.reconcile.steps import CONTAINER_STEPS, Kill, Plan, PlanContext, Pull, RemoveImage
from tests.unit.reconcile.factories import target
from tests.unit.reconcile.sim import EXIT_LABEL, apply_all, image_id_for, one_shots

IMAGES = (
    "alpine",
    "docker.io/library/alpine:latest",  # the same image as `alpine`
    "alpine:3.19",
    "repo@sha256:" + "a" * 64,
    "repo@sha256:" + "b" * 64,
    "registry.local:5000/team/web:1",
    "registry.local:5000/team/web:2",
)
SERVICES = ("api", "cache", "db", "web", "worker")
STATUSES = (
    ContainerStatus.CREATED,
    ContainerStatus.RUNNING,
    ContainerStatus.RESTARTING,
    ContainerStatus.EXITED,
)
STRATEGIES = ("kill-then-download", "hand-over", "delete-then-download")
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
APPS = {"app-a": 1, "app-b": 2, "app-c": 3}
EXTRA_APPS = {"app-x": 9, "app-y": 8}  # on the engine, never in the target
ALL_APPS = {**APPS, **EXTRA_APPS}
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Scenario:
    target: TargetState
    current: CurrentState
    ctx: PlanContext

    @property
    def lock_effective(self) -> bool:
        return bool(self.ctx.locked_apps) and not self.ctx.force


# --- targets --------------------------------------------------------------------------------
# Generation draws integers only (`pick`, `subset`): building fresh list/sampled_from strategies
# inside composites costs hypothesis more than the whole plan/apply loop.

T = TypeVar("T")


def pick(draw: st.DrawFn, options: Sequence[T]) -> T:
    return options[draw(st.integers(0, len(options) - 1))]


def subset(draw: st.DrawFn, options: Sequence[T], min_size: int = 0, max_size: int = 9) -> list[T]:
    if not options:
        return []
    mask = draw(st.integers(0 if not min_size else 1, 2 ** len(options) - 1))
    return [x for i, x in enumerate(options) if mask >> i & 1][:max_size]


def chance(draw: st.DrawFn, one_in: int) -> bool:
    return draw(st.integers(0, one_in - 1)) == 0


@st.composite
def services_doc(draw: st.DrawFn, volumes: list[str], networks: list[str]) -> dict[str, Any]:
    names = list(draw(st.permutations(SERVICES)))[: draw(st.integers(1, len(SERVICES)))]
    services: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        earlier = names[:i]
        comp: dict[str, Any] = {}
        deps = subset(draw, earlier, max_size=2)
        if deps:
            comp["depends_on"] = {d: {"condition": pick(draw, CONDITIONS)} for d in deps}
        mounts = subset(draw, volumes)
        if mounts:
            comp["volumes"] = [f"{v}:/mnt/{v}" for v in mounts]
        net = pick(draw, ("default", "declared", "host", "service"))
        if net == "declared" and networks:
            comp["networks"] = subset(draw, networks, min_size=1)
        elif net == "host":
            comp["network_mode"] = "host"
        elif net == "service" and earlier:
            comp["network_mode"] = f"service:{pick(draw, earlier)}"
        if draw(st.booleans()):
            comp["healthcheck"] = {"test": ["CMD", "true"]}
        labels = {}
        if chance(draw, 5):
            labels["io.balena.update.strategy"] = pick(draw, STRATEGIES)
        services[name] = {
            "id": i + 1,
            "image_id": 10 + i,
            "image": pick(draw, IMAGES),
            "environment": {k: pick(draw, "12") for k in subset(draw, "AB")},
            "labels": labels,
            "running": not chance(draw, 4),
            "composition": comp,
        }
    # A dependency someone waits to complete is a one-shot (it exits 0 in the simulator); every
    # wait on it is then for completion, and nothing shares its network namespace.
    one_shots = {
        dep
        for s in services.values()
        for dep, spec in s["composition"].get("depends_on", {}).items()
        if spec["condition"] == "service_completed_successfully"
    }
    for name, s in services.items():
        comp = s["composition"]
        if name in one_shots:
            s["labels"][EXIT_LABEL] = "0"
        for dep in comp.get("depends_on", {}):
            if dep in one_shots:
                comp["depends_on"][dep] = {"condition": "service_completed_successfully"}
        if comp.get("network_mode", "").removeprefix("service:") in one_shots:
            del comp["network_mode"]
    return services


@st.composite
def app_doc(draw: st.DrawFn, uuid: str, app_id: int) -> dict[str, Any]:
    kind = pick(draw, ("release",) * 6 + ("no-release", "rejected"))
    if kind == "no-release":
        return {"id": app_id, "name": uuid, "releases": {}}
    volumes = subset(draw, ("data", "logs"))
    networks = subset(draw, ("front", "back"))
    services = draw(services_doc(volumes, networks))
    if kind == "rejected":
        next(iter(services.values()))["image"] = ""
    rel = f"{uuid}-r{draw(st.integers(1, 2))}"
    return {
        "id": app_id,
        "name": uuid,
        "releases": {
            rel: {
                "id": draw(st.integers(1, 2)),
                "services": services,
                "volumes": {v: {} for v in volumes},
                "networks": {n: {} for n in networks},
            }
        },
    }


@st.composite
def targets(draw: st.DrawFn) -> TargetState:
    uuids = subset(draw, sorted(APPS), min_size=1)
    return target({u: draw(app_doc(u, APPS[u])) for u in uuids})


# --- current states -------------------------------------------------------------------------


@st.composite
def currents(draw: st.DrawFn, tgt: TargetState) -> CurrentState:
    apps = sorted(set(subset(draw, sorted(ALL_APPS))) | set(tgt.apps))
    containers: list[ContainerState] = []
    for uuid in apps:
        spec = tgt.apps.get(uuid)
        services = dict(spec.release.services) if spec and spec.release else {}
        for _ in range(draw(st.integers(0, 5))):
            n = len(containers)
            name = pick(draw, (*sorted(services), "old"))
            svc = services.get(name)
            matching = svc is not None and draw(st.booleans())
            status = pick(draw, STATUSES)
            same_release = matching and spec is not None and draw(st.booleans())
            release_uuid = (spec.release_uuid if same_release and spec else None) or "old-release"
            ref = svc.image if matching and svc else pick(draw, IMAGES)
            containers.append(
                ContainerState(
                    id=f"c{n:02d}",
                    name=container_name(name, 1, 0, release_uuid),
                    app_id=ALL_APPS[uuid],
                    app_uuid=uuid,
                    service_name=name,
                    service_id=1,
                    image_id=1,
                    release_uuid=release_uuid,
                    release_id=0,
                    image=ref,
                    image_docker_id=image_id_for(ref),
                    config_hash=svc.config_hash() if matching and svc else "stale",
                    status=status,
                    health=pick(draw, (None, "healthy", "unhealthy")),
                    exit_code=draw(st.integers(0, 1)) if status == "exited" else None,
                    created_at=f"{draw(st.integers(0, 3)):06d}",
                )
            )
    images: dict[str, ImageState] = {}
    for ref in [*subset(draw, IMAGES), *(c.image for c in containers)]:
        image_id = image_id_for(ref)
        refs = frozenset({normalize_image_ref(ref)})
        old = images.get(image_id)
        if old:
            refs |= old.refs
        images[image_id] = ImageState(image_id, refs, managed=draw(st.booleans()))
    volumes = [
        VolumeState(name=f"{ALL_APPS[u]}_{v}", app_id=ALL_APPS[u], app_uuid=u)
        for u in subset(draw, sorted(ALL_APPS))
        for v in subset(draw, ("data", "logs", "cache"))
    ]
    networks = []
    for u in subset(draw, sorted(ALL_APPS)):
        for net in subset(draw, ("default", "front", "stale")):
            legacy = chance(draw, 4)  # left by a supervisor that labelled the app id only
            name = f"{ALL_APPS[u]}_{net}"
            networks.append(NetworkState(name, f"n-{name}", ALL_APPS[u], None if legacy else u))
    return CurrentState(
        containers=tuple(containers),
        images=tuple(images.values()),
        volumes=tuple(volumes),
        networks=tuple(networks),
    )


@st.composite
def scenarios(draw: st.DrawFn, lock: bool | None = None) -> Scenario:
    tgt = draw(targets())
    current = draw(currents(tgt))
    app_ids = sorted(ALL_APPS.values())
    if lock is None:
        locked = subset(draw, app_ids) if draw(st.booleans()) else []
        force = draw(st.booleans())
    else:
        locked, force = (subset(draw, app_ids, min_size=1), False) if lock else ([], False)
    releases = sorted(a.release_uuid for a in tgt.apps.values() if a.release_uuid)
    aborted = {pick(draw, releases): "gave up"} if releases and chance(draw, 5) else {}
    ctx = PlanContext(
        locked_apps=frozenset(locked),
        force=force,
        aborted=aborted,
        cleanup_images=not chance(draw, 3),
        now=HANDOVER_ELAPSED,  # simulated containers are old: every hand-over timeout is over
    )
    return Scenario(tgt, current, ctx)


# --- running the loop -----------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    passes: list[tuple[CurrentState, Plan]]  # the state each plan was made from, and the plan
    final: CurrentState


HANDOVER_ELAPSED = 1e9
KILL_FIRST = ("kill-then-download", "delete-then-download")


def run(sc: Scenario, max_passes: int = 10) -> Trace:
    current = sc.current
    passes: list[tuple[CurrentState, Plan]] = []
    exits = one_shots(sc.target)
    for _ in range(max_passes + 1):
        p = plan(current, sc.target, sc.ctx)
        passes.append((current, p))
        if not p.steps:
            return Trace(passes, current)
        current = apply_all(current, p.steps, exits)
    raise AssertionError(f"no plan without steps after {max_passes} passes: {p.steps}")


def untouchable(sc: Scenario) -> set[str]:
    """Target apps whose containers the planner must leave as they are."""
    return {
        uuid
        for uuid, a in sc.target.apps.items()
        if a.rejected or (a.release_uuid is not None and a.release_uuid in sc.ctx.aborted)
    }


def may_wait_forever(sc: Scenario) -> bool:
    """A kept container that exited, is unhealthy, or is a one-shot still running can hold its
    dependents back for good (the planner never restarts it: the restart policy owns it)."""
    wanted = {
        s.config_hash()
        for a in sc.target.apps.values()
        if a.release is not None
        for s in a.release.services.values()
    }
    never_exits = set(one_shots(sc.target))  # a one-shot found running: it won't complete here
    # a one-shot under hand-over: its replacement exits, and an exited replacement never
    # takes over from the old container (the old one keeps serving, by design)
    handing_over_one_shot = any(
        s.update_strategy == "hand-over"
        and s.config_hash() in never_exits
        and any(
            c.app_uuid == a.uuid and c.service_name == s.name and c.config_hash != s.config_hash()
            for c in sc.current.containers
        )
        for a in sc.target.apps.values()
        if a.release is not None
        for s in a.release.services.values()
    )
    return handing_over_one_shot or any(
        c.config_hash in wanted
        and (
            c.status == ContainerStatus.EXITED
            or c.health == "unhealthy"
            or (c.running and c.config_hash in never_exits)
        )
        for c in sc.current.containers
    )


def app_of(step: Any) -> tuple[str | None, int | None]:
    if isinstance(step, CONTAINER_STEPS):
        app = getattr(step, "app", None)
        if app is not None and not isinstance(step, Kill):
            return app.uuid, app.id
        return step.container.app_uuid, step.container.app_id  # type: ignore[union-attr]
    return None, None


# --- properties -----------------------------------------------------------------------------


@SETTINGS
@given(scenarios())
def test_converges_to_one_matching_container_per_service(sc: Scenario) -> None:
    trace = run(sc)
    final_plan = trace.passes[-1][1]
    assert set(final_plan.apps) == set(sc.target.apps)
    initial = {c.id: c for c in sc.current.containers}
    # rejected and aborted apps: their containers are exactly what they were
    for uuid in untouchable(sc):
        assert sc.current.app_containers(uuid) == trace.final.app_containers(uuid)
    if sc.lock_effective or may_wait_forever(sc):
        return
    assert final_plan.converged
    for uuid, app in sc.target.apps.items():
        if uuid in untouchable(sc):
            continue
        assert final_plan.apps[uuid].status == UpdateStatus.DONE
        services = app.release.services if app.release else {}
        by_name: dict[str, list[ContainerState]] = {}
        for c in trace.final.app_containers(uuid):
            by_name.setdefault(c.service_name, []).append(c)
        assert set(by_name) == set(services)
        for name, cs in by_name.items():
            s = services[name]
            assert len(cs) == 1, cs
            (c,) = cs
            assert c.config_hash == s.config_hash()
            assert c.release_uuid == app.release_uuid
            kept_exited = c.status == ContainerStatus.EXITED and (
                EXIT_LABEL in s.labels or (c.id in initial and initial[c.id].status == "exited")
            )
            assert c.running == s.running or (s.running and kept_exited), (c, s.running)
    gone = {c.app_uuid for c in trace.final.containers} - set(sc.target.apps)
    assert not gone
    assert not {n.app_uuid for n in trace.final.networks if n.app_uuid} - set(sc.target.apps)


@SETTINGS
@given(scenarios())
def test_volumes_are_never_removed(sc: Scenario) -> None:
    trace = run(sc)
    before = {v.name for v in sc.current.volumes}
    for current, _ in trace.passes:
        assert before <= {v.name for v in current.volumes}
    assert before <= {v.name for v in trace.final.volumes}


@SETTINGS
@given(scenarios())
def test_download_then_kill_no_container_step_while_an_image_is_missing(sc: Scenario) -> None:
    """Only kill-then-download / delete-then-download services may lose their old container
    before the release's images are all present — and only by a Kill, never a Start."""
    trace = run(sc)
    for current, p in trace.passes:
        for uuid, app in sc.target.apps.items():
            if app.release is None or app.rejected:
                continue
            services = app.release.services
            missing = sorted({s.image for s in services.values()} - _present(current))
            touched = [s for s in p.steps if app_of(s)[0] == uuid]
            if missing:
                for step in touched:
                    if isinstance(step, CONTAINER_STEPS):
                        assert isinstance(step, Kill), step
                        svc = services.get(step.container.service_name)
                        assert svc is not None and svc.update_strategy in KILL_FIRST, step
                        assert svc.image in missing
                if p.apps[uuid].status != UpdateStatus.ABORTED:
                    assert p.apps[uuid].status == UpdateStatus.DOWNLOADING
                    assert list(p.apps[uuid].missing_images) == missing


@SETTINGS
@given(scenarios())
def test_kill_first_services_stop_before_their_image_is_pulled(sc: Scenario) -> None:
    trace = run(sc)
    for _current, p in trace.passes:
        kills = [s for s in p.steps if isinstance(s, Kill)]
        for pull in (s for s in p.steps if isinstance(s, Pull)):
            app = sc.target.apps[pull.app_uuid]
            assert app.release is not None
            for name in pull.services:
                if app.release.services[name].update_strategy in KILL_FIRST:
                    stale = [
                        k
                        for k in kills
                        if k.container.service_name == name
                        and k.container.app_uuid == pull.app_uuid
                    ]
                    assert not stale, "pulled in the same pass as stopping the old container"


@SETTINGS
@given(scenarios())
def test_hand_over_never_kills_the_old_container_before_the_new_one_runs(sc: Scenario) -> None:
    trace = run(sc)
    for current, p in trace.passes:
        for step in p.steps:
            if not isinstance(step, Kill) or step.container.app_uuid not in sc.target.apps:
                continue
            app = sc.target.apps[step.container.app_uuid]
            svc = app.release.services.get(step.container.service_name) if app.release else None
            if svc is None or svc.update_strategy != "hand-over" or not svc.running:
                continue  # (a service told not to run has nothing to hand over)
            want = svc.config_hash()
            if step.container.config_hash == want:
                continue  # a duplicate of the new config, not the old container
            replacements = [
                c
                for c in current.containers
                if c.app_uuid == app.uuid and c.service_name == svc.name and c.config_hash == want
            ]
            assert any(c.running and c.health in (None, "healthy") for c in replacements), (
                f"old {step.container.name} killed before its replacement ran"
            )


def _present(current: CurrentState) -> set[str]:
    refs = {r for i in current.images for r in i.refs}
    return {ref for ref in IMAGES if normalize_image_ref(ref) in refs}


@SETTINGS
@given(scenarios(lock=True))
def test_locked_app_gets_no_container_step(sc: Scenario) -> None:
    trace = run(sc)
    for _, p in trace.passes:
        for step in p.steps:
            _, app_id = app_of(step)
            assert app_id not in sc.ctx.locked_apps, step
        for uuid, app_plan in p.apps.items():
            if sc.target.apps[uuid].id in sc.ctx.locked_apps:
                assert app_plan.status != UpdateStatus.APPLYING_CHANGES
                if app_plan.blocked_by_lock:
                    # kill-first services wait for the lock before their download even starts
                    assert app_plan.status in (UpdateStatus.DOWNLOADED, UpdateStatus.DOWNLOADING)
    # apps on the engine that are locked keep their containers
    for c in sc.current.containers:
        if c.app_id in sc.ctx.locked_apps and c.app_uuid not in sc.target.apps:
            assert c in trace.final.containers


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_plan_is_deterministic_and_ignores_engine_listing_order(sc: Scenario, rnd: Any) -> None:
    trace = run(sc)
    for current, p in trace.passes:
        assert plan(current, sc.target, sc.ctx) == p
        shuffled = replace(
            current,
            containers=tuple(rnd.sample(current.containers, len(current.containers))),
            images=tuple(rnd.sample(current.images, len(current.images))),
            volumes=tuple(rnd.sample(current.volumes, len(current.volumes))),
            networks=tuple(rnd.sample(current.networks, len(current.networks))),
        )
        assert plan(shuffled, sc.target, sc.ctx) == p


@SETTINGS
@given(scenarios())
def test_remove_image_never_hits_an_image_in_use_or_needed(sc: Scenario) -> None:
    trace = run(sc)
    needed = {
        normalize_image_ref(s.image)
        for a in sc.target.apps.values()
        if a.release is not None
        for s in a.release.services.values()
    }
    for current, p in trace.passes:
        used = {c.image_docker_id for c in current.containers}
        images = {i.id: i for i in current.images}
        for step in p.steps:
            if isinstance(step, RemoveImage):
                assert step.image_id not in used
                assert not images[step.image_id].refs & needed
                assert images[step.image_id].managed
                assert sc.ctx.cleanup_images
