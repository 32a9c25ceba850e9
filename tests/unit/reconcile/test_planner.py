"""Example tests for the planner, one or more per rule (see agent/reconcile/planner.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from agent.model import ContainerStatus, NetworkSpec, ReleaseSpec, TargetState, UpdateStatus
from agent.model.target import AppSpec
from agent.reconcile.planner import plan
from agent.reconcile.steps import (
    CONTAINER_STEPS,
    CreateNetwork,
    CreateVolume,
    Kill,
    PlanContext,
    Pull,
    RemoveImage,
    RemoveNetwork,
    Start,
    StartContainer,
    StopContainer,
    UpdateMetadata,
)
from tests.unit.reconcile.factories import (
    app,
    container,
    converge,
    described,
    image,
    network,
    old_release_state,
    release,
    running_for,
    state,
    svc,
    target,
    two_service_target,
    volume,
)
from tests.unit.reconcile.sim import SimEngine, apply_all, image_id_for

DIGEST_A = "repo@sha256:" + "a" * 64
DIGEST_B = "repo@sha256:" + "b" * 64


def rel(tgt: TargetState, uuid: str = "a1") -> ReleaseSpec:
    release = tgt.apps[uuid].release
    assert release is not None
    return release


def kinds(steps) -> list[str]:
    return [type(s).__name__ for s in steps]


# --- first deploy ---------------------------------------------------------------------------


def test_first_deploy_pulls_then_creates_then_starts_in_dependency_order():
    tgt = two_service_target()
    p1 = plan(state(), tgt, PlanContext())
    a1 = tgt.apps["a1"]
    assert p1.steps == (
        Pull("db:1", "a1", ("db",)),
        Pull("web:2", "a1", ("web",)),
        CreateVolume(a1, rel(tgt).volumes["data"]),
        CreateNetwork(a1, NetworkSpec(name="default")),
    )
    assert p1.apps["a1"].status == UpdateStatus.DOWNLOADING
    assert p1.apps["a1"].missing_images == ("db:1", "web:2")

    s2 = apply_all(state(), p1.steps)
    p2 = plan(s2, tgt, PlanContext())
    assert described(p2.steps) == ["Start a1/db"]
    assert p2.apps["a1"].status == UpdateStatus.APPLYING_CHANGES
    assert p2.apps["a1"].waiting_on == ("web waits for db (service_started)",)
    assert not p2.converged

    final, plans = converge(s2, tgt)
    assert len(plans) == 3  # start db, start web, nothing
    assert plans[-1].apps["a1"].status == UpdateStatus.DONE
    assert plans[-1].converged
    assert sorted(c.service_name for c in final.containers) == ["db", "web"]
    assert all(c.status == ContainerStatus.RUNNING for c in final.containers)


def test_start_waits_for_volume_and_network_created_in_the_same_pass():
    tgt = two_service_target()
    present = state(image("db:1"), image("web:2"))
    p = plan(present, tgt, PlanContext())
    assert kinds(p.steps) == ["CreateVolume", "CreateNetwork"]
    assert p.apps["a1"].waiting_on == (
        "db waits for volume data",
        "db waits for network default",
        "web waits for network default",
        "web waits for db (service_started)",
    )
    assert p.apps["a1"].status == UpdateStatus.APPLYING_CHANGES


def test_present_image_is_never_pulled_and_shared_image_is_pulled_once():
    tgt = target(
        {
            "a1": app(
                1,
                release(
                    "r1",
                    {
                        "a": svc("docker.io/library/alpine"),
                        "b": svc("alpine:latest"),
                        "c": svc("busybox:1"),
                        "d": svc("busybox:1"),
                    },
                ),
            )
        }
    )
    p = plan(state(image("alpine")), tgt, PlanContext())
    assert [s for s in p.steps if isinstance(s, Pull)] == [Pull("busybox:1", "a1", ("c", "d"))]
    assert p.apps["a1"].missing_images == ("busybox:1",)


# --- updates --------------------------------------------------------------------------------


def test_one_service_update_downloads_before_killing_and_keeps_unchanged_service():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:2", "r2", 2)
    current = old_release_state(old)
    assert plan(current, old, PlanContext()).steps == ()

    p1 = plan(current, new, PlanContext())
    assert p1.steps == (Pull("web:2", "a1", ("web",)),)
    assert p1.apps["a1"].status == UpdateStatus.DOWNLOADING

    s2 = apply_all(current, p1.steps)
    p2 = plan(s2, new, PlanContext())
    assert described(p2.steps) == ["Kill c-web", "UpdateMetadata c-db -> r2"]

    final, plans = converge(s2, new)
    assert plans[-1].apps["a1"].status == UpdateStatus.DONE
    db = next(c for c in final.containers if c.service_name == "db")
    assert db.id == "c-db" and db.release_uuid == "r2"  # carried over, not restarted
    # web:1 is unused once the old web is gone: removed by id, on the pass that found it done
    removes = [s for p in plans for s in p.steps if isinstance(s, RemoveImage)]
    assert removes == [RemoveImage(image_id_for("web:1"), ("web:1",))]
    assert {v.name for v in final.volumes} == {"1_data"}


def test_update_metadata_without_restart_when_only_the_release_changed():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:1", "r2", 2)
    current = old_release_state(old)
    p = plan(current, new, PlanContext())
    assert kinds(p.steps) == ["UpdateMetadata", "UpdateMetadata"]
    assert all(isinstance(s, UpdateMetadata) and s.app.release_uuid == "r2" for s in p.steps)
    final, plans = converge(current, new)
    assert {c.id for c in final.containers} == {"c-db", "c-web"}
    assert {c.release_uuid for c in final.containers} == {"r2"}


def test_removed_service_is_killed():
    old = two_service_target("web:1", "r1", 1)
    new = target(
        {
            "a1": app(
                1,
                release(
                    "r1",
                    {"db": svc("db:1", composition={"volumes": ["data:/var/lib/db"]})},
                    rid=1,
                    volumes={"data": {}},
                ),
            )
        }
    )
    current = old_release_state(old)
    p = plan(current, new, PlanContext())
    assert described(p.steps) == ["Kill c-web"]
    final, plans = converge(current, new)
    assert [c.id for c in final.containers] == ["c-db"]
    assert plans[-1].apps["a1"].status == UpdateStatus.DONE


def test_changed_config_kills_first_and_starts_on_a_later_pass():
    old = two_service_target("web:1", "r1", 1)
    new = target(
        {
            "a1": app(
                1,
                release(
                    "r1",
                    {
                        "db": svc("db:1", composition={"volumes": ["data:/var/lib/db"]}),
                        "web": svc(
                            "web:1",
                            environment={"MODE": "new"},
                            composition={"depends_on": ["db"]},
                        ),
                    },
                    rid=1,
                    volumes={"data": {}},
                ),
            )
        }
    )
    current = old_release_state(old)
    p1 = plan(current, new, PlanContext())
    assert kinds(p1.steps) == ["Kill"]
    p2 = plan(apply_all(current, p1.steps), new, PlanContext())
    assert described(p2.steps) == ["Start a1/web"]
    assert isinstance(p2.steps[0], Start) and p2.steps[0].service.environment == {"MODE": "new"}


# --- duplicates -----------------------------------------------------------------------------


def test_duplicates_keep_matching_then_running_then_newest_then_id():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    h = rel(tgt).services["web"].config_hash()
    common: dict[str, Any] = dict(release_uuid="r1", release_id=1, image_ref="web:1")
    stale_running = container("c1", "a1", "web", created_at="000009", **common)
    exited_new = container(
        "c2",
        "a1",
        "web",
        config_hash=h,
        status=ContainerStatus.EXITED,
        created_at="000008",
        **common,
    )
    running_old = container("c3", "a1", "web", config_hash=h, created_at="000001", **common)
    running_new = container("c4", "a1", "web", config_hash=h, created_at="000002", **common)
    running_new_twin = container("c5", "a1", "web", config_hash=h, created_at="000002", **common)
    current = state(
        image("web:1"),
        network("1_default"),
        stale_running,
        exited_new,
        running_old,
        running_new,
        running_new_twin,
    )
    p = plan(current, tgt, PlanContext())
    killed = sorted(s.container.id for s in p.steps if isinstance(s, Kill))
    assert killed == ["c1", "c2", "c3", "c5"]
    assert kinds(p.steps) == ["Kill"] * 4
    final, _ = converge(current, tgt)
    assert [c.id for c in final.containers] == ["c4"]


def test_duplicates_without_any_matching_container_are_all_killed_then_one_started():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    current = state(
        image("web:1"),
        network("1_default"),
        container("c1", "a1", "web", image_ref="web:1"),
        container("c2", "a1", "web", image_ref="web:1"),
    )
    p = plan(current, tgt, PlanContext())
    assert sorted(s.container.id for s in p.steps if isinstance(s, Kill)) == ["c1", "c2"]
    final, plans = converge(current, tgt)
    assert len(final.containers) == 1 and final.containers[0].id.startswith("sim-")


# --- app removal / no release ---------------------------------------------------------------


def test_removed_app_is_killed_then_its_networks_removed_but_never_its_volumes():
    tgt = target({})
    current = state(
        image("web:1"),
        volume("9_data", 9, "gone"),
        network("9_default", 9, "gone"),
        container("c1", "gone", "web", app_id=9, image_ref="web:1"),
        container("c2", "gone", "db", app_id=9, image_ref="web:1"),
    )
    p1 = plan(current, tgt, PlanContext())
    assert described(p1.steps) == ["Kill c2", "Kill c1"]  # by service name: db, web
    assert p1.apps == {}
    s2 = apply_all(current, p1.steps)
    p2 = plan(s2, tgt, PlanContext())
    assert p2.steps == (
        RemoveNetwork("9_default", "gone"),
        RemoveImage(image_id_for("web:1"), ("web:1",)),
    )
    final, _ = converge(s2, tgt)
    assert [v.name for v in final.volumes] == ["9_data"]
    assert final.networks == () and final.images == () and final.containers == ()


def test_locked_removed_app_is_left_alone_and_blocks_image_cleanup():
    current = state(image("web:1"), image("x:1"), container("c1", "gone", "web", app_id=9))
    p = plan(current, target({}), PlanContext(locked_apps=frozenset({9})))
    assert p.steps == ()
    forced = plan(current, target({}), PlanContext(locked_apps=frozenset({9}), force=True))
    assert kinds(forced.steps) == ["Kill"]


def test_legacy_network_without_app_uuid_of_a_gone_app_is_removed():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    current = state(
        image("web:1"),
        network("7_default", 7, None),
        network("1_default", 1, None),
        running_for(tgt, "a1", "web", "c1"),
    )
    p = plan(current, tgt, PlanContext())
    assert p.steps == (RemoveNetwork("7_default", None),)
    assert p.apps["a1"].status == UpdateStatus.DONE


def test_app_without_release_kills_its_containers_and_is_done_when_none_left():
    tgt = target({"a1": app(1, {})})
    assert tgt.apps["a1"].release is None and not tgt.apps["a1"].rejected
    current = state(container("c1", "a1", "web"), network("1_default"), volume("1_data"))
    p = plan(current, tgt, PlanContext())
    assert kinds(p.steps) == ["Kill"]
    assert p.apps["a1"].status == UpdateStatus.APPLYING_CHANGES
    final, plans = converge(current, tgt, PlanContext(cleanup_images=False))
    assert plans[-1].apps["a1"].status == UpdateStatus.DONE
    assert RemoveNetwork("1_default", "a1") in plans[-2].steps
    assert [v.name for v in final.volumes] == ["1_data"]


def test_unneeded_network_of_a_target_app_is_removed_only_once_done():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    current = state(
        image("web:1"),
        network("1_default"),
        network("1_old"),
        network("1_legacy", 1, None),
        container("c1", "a1", "web", image_ref="web:1"),
    )
    p1 = plan(current, tgt, PlanContext())
    assert kinds(p1.steps) == ["Kill"]
    s2 = apply_all(current, p1.steps)
    p2 = plan(s2, tgt, PlanContext())
    assert kinds(p2.steps) == ["Start"]
    p3 = plan(apply_all(s2, p2.steps), tgt, PlanContext())
    assert p3.steps == (RemoveNetwork("1_legacy", None), RemoveNetwork("1_old", "a1"))
    assert p3.apps["a1"].status == UpdateStatus.DONE


# --- locks ----------------------------------------------------------------------------------


def test_locked_app_downloads_but_touches_no_container():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:2", "r2", 2)
    current = old_release_state(old)
    ctx = PlanContext(locked_apps=frozenset({1}))
    p1 = plan(current, new, ctx)
    assert p1.steps == (Pull("web:2", "a1", ("web",)),)
    assert p1.apps["a1"].status == UpdateStatus.DOWNLOADING
    s2 = apply_all(current, p1.steps)
    p2 = plan(s2, new, ctx)
    assert p2.steps == ()
    assert p2.apps["a1"].status == UpdateStatus.DOWNLOADED
    assert p2.apps["a1"].blocked_by_lock


def test_locked_app_still_gets_its_volumes_and_networks():
    tgt = two_service_target()
    current = state(image("db:1"), image("web:2"))
    p = plan(current, tgt, PlanContext(locked_apps=frozenset({1})))
    assert kinds(p.steps) == ["CreateVolume", "CreateNetwork"]
    assert p.apps["a1"].status == UpdateStatus.DOWNLOADED and p.apps["a1"].blocked_by_lock


def test_lock_of_another_app_does_not_block_and_force_overrides():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:2", "r2", 2)
    current = apply_all(old_release_state(old), (Pull("web:2", "a1", ("web",)),))
    other = plan(current, new, PlanContext(locked_apps=frozenset({2})))
    assert kinds(other.steps) == ["Kill", "UpdateMetadata"]
    forced = plan(current, new, PlanContext(locked_apps=frozenset({1}), force=True))
    assert forced.steps == other.steps
    assert forced.apps["a1"].status == UpdateStatus.APPLYING_CHANGES
    assert not forced.apps["a1"].blocked_by_lock


def test_locked_app_that_is_done_reports_done():
    tgt = two_service_target("web:1", "r1", 1)
    current = old_release_state(tgt)
    p = plan(current, tgt, PlanContext(locked_apps=frozenset({1})))
    assert p.steps == () and p.apps["a1"].status == UpdateStatus.DONE


# --- rejected / aborted ---------------------------------------------------------------------


def test_rejected_app_is_untouched_and_its_images_kept():
    tgt = target({"a1": app(1, release("r2", {"web": svc("")}))})
    assert tgt.apps["a1"].rejected
    current = state(
        image("web:1"),
        image("unused:1"),
        network("1_default"),
        network("1_old"),
        container("c1", "a1", "web", image_ref="web:1", status=ContainerStatus.CREATED),
        container("c2", "a1", "web", image_ref="web:1"),
    )
    p = plan(current, tgt, PlanContext())
    assert p.apps["a1"].status == UpdateStatus.REJECTED
    assert p.apps["a1"].reason == tgt.apps["a1"].rejection
    assert p.apps["a1"].release_uuid == "r2"
    assert p.steps == (RemoveImage(image_id_for("unused:1"), ("unused:1",)),)


def test_rejected_app_built_directly_is_untouched():
    rejected = AppSpec(uuid="a1", id=1, name="x", release_uuid="r9", rejection="bad contract")
    tgt = target({})
    tgt = type(tgt)(tgt.device_uuid, tgt.name, tgt.config, {"a1": rejected})
    current = state(container("c1", "a1", "web"), image("old:1"))
    p = plan(current, tgt, PlanContext())
    assert p.steps == ()
    assert p.apps["a1"].reason == "bad contract"


def test_aborted_release_gets_no_steps_not_even_pulls():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:2", "r2", 2)
    current = old_release_state(old, image("stale:1"))
    p = plan(current, new, PlanContext(aborted={"r2": "pull failed 5 times"}))
    assert p.apps["a1"].status == UpdateStatus.ABORTED
    assert p.apps["a1"].reason == "pull failed 5 times"
    # nothing for the app; only the unrelated unused image goes
    assert p.steps == (RemoveImage(image_id_for("stale:1"), ("stale:1",)),)


# --- depends_on / running -------------------------------------------------------------------


def dep_target(cond: str, **dep_extra):
    return target(
        {
            "a1": app(
                1,
                release(
                    "r1",
                    {
                        "db": svc("db:1", **dep_extra),
                        "web": svc(
                            "web:1", composition={"depends_on": {"db": {"condition": cond}}}
                        ),
                    },
                ),
            )
        }
    )


def dep_state(tgt, **db_changes):
    return state(
        image("db:1"),
        image("web:1"),
        network("1_default"),
        running_for(tgt, "a1", "db", "c-db", **db_changes),
    )


def test_service_healthy_waits_for_health():
    tgt = dep_target("service_healthy")
    waiting = plan(dep_state(tgt, health="starting"), tgt, PlanContext())
    assert waiting.steps == ()
    assert waiting.apps["a1"].waiting_on == ("web waits for db (service_healthy)",)
    assert waiting.apps["a1"].status == UpdateStatus.APPLYING_CHANGES
    for health in ("healthy", None):
        ready = plan(dep_state(tgt, health=health), tgt, PlanContext())
        assert kinds(ready.steps) == ["Start"]


def test_dependency_with_a_stale_config_does_not_count():
    tgt = dep_target("service_started")
    p = plan(dep_state(tgt, config_hash="stale"), tgt, PlanContext())
    assert kinds(p.steps) == ["Kill"]
    assert p.apps["a1"].waiting_on == ("web waits for db (service_started)",)


def test_service_completed_successfully_waits_for_exit_zero():
    tgt = dep_target("service_completed_successfully")
    running = plan(dep_state(tgt), tgt, PlanContext())
    assert running.steps == ()
    failed = dep_state(tgt, status=ContainerStatus.EXITED, exit_code=1)
    assert plan(failed, tgt, PlanContext()).steps == ()
    done = dep_state(tgt, status=ContainerStatus.EXITED, exit_code=0)
    assert kinds(plan(done, tgt, PlanContext()).steps) == ["Start"]


def test_one_shot_dependency_converges_in_the_simulator():
    tgt = dep_target("service_completed_successfully", labels={"sim.exit-code": "0"})
    final, plans = converge(state(), tgt)
    assert plans[-1].apps["a1"].status == UpdateStatus.DONE
    statuses = {c.service_name: c.status for c in final.containers}
    assert statuses == {"db": ContainerStatus.EXITED, "web": ContainerStatus.RUNNING}


def test_dependency_told_not_to_run_is_met_once_created():
    tgt = dep_target("service_healthy", running=False)
    final, plans = converge(state(), tgt)
    statuses = {c.service_name: c.status for c in final.containers}
    assert statuses == {"db": ContainerStatus.CREATED, "web": ContainerStatus.RUNNING}


def test_network_mode_service_is_a_dependency():
    tgt = target(
        {
            "a1": app(
                1,
                release(
                    "r1",
                    {
                        "vpn": svc("vpn:1"),
                        "web": svc("web:1", composition={"network_mode": "service:vpn"}),
                    },
                ),
            )
        }
    )
    current = state(image("vpn:1"), image("web:1"), network("1_default"))
    p = plan(current, tgt, PlanContext())
    assert described(p.steps) == ["Start a1/vpn"]
    assert p.apps["a1"].waiting_on == ("web waits for vpn (service_started)",)
    final, _ = converge(current, tgt)
    assert len(final.containers) == 2


def test_running_false_creates_without_starting_and_stops_a_running_one():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1", running=False)}))})
    final, plans = converge(state(), tgt)
    assert [c.status for c in final.containers] == [ContainerStatus.CREATED]
    assert plans[-1].apps["a1"].status == UpdateStatus.DONE

    running = state(
        image("web:1"),
        network("1_default"),
        running_for(tgt, "a1", "web", "c1", status=ContainerStatus.RUNNING),
    )
    p = plan(running, tgt, PlanContext())
    assert kinds(p.steps) == ["StopContainer"]
    assert isinstance(p.steps[0], StopContainer)


def test_created_container_is_started_but_exited_one_is_left_to_the_restart_policy():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    base = (image("web:1"), network("1_default"))
    created = state(*base, running_for(tgt, "a1", "web", "c1", status=ContainerStatus.CREATED))
    p = plan(created, tgt, PlanContext())
    assert p.steps == (StartContainer(created.containers[0]),)
    exited = state(
        *base,
        running_for(tgt, "a1", "web", "c1", status=ContainerStatus.EXITED, exit_code=1),
    )
    p = plan(exited, tgt, PlanContext())
    assert p.steps == () and p.apps["a1"].status == UpdateStatus.DONE


# --- image cleanup --------------------------------------------------------------------------


def test_cleanup_by_id_when_two_releases_share_one_repository():
    old = target({"a1": app(1, release("r1", {"web": svc(DIGEST_A)}))})
    new = target({"a1": app(1, release("r2", {"web": svc(DIGEST_B, environment={"V": "2"})}))})
    current = state(image(DIGEST_A), network("1_default"), running_for(old, "a1", "web", "c-web"))
    final, plans = converge(current, new)
    assert [kinds(p.steps) for p in plans] == [
        ["Pull"],
        ["Kill"],
        ["Start"],
        ["RemoveImage"],
        [],
    ]
    assert plans[3].steps == (RemoveImage(image_id_for(DIGEST_A), (DIGEST_A,)),)
    assert [i.id for i in final.images] == [image_id_for(DIGEST_B)]


def test_cleanup_never_removes_an_image_in_use_or_needed_or_unmanaged():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    # the container runs an image that lost its tag (web:1 was re-pulled): kept by its id
    current = state(
        image("web:1"),  # needed by the target
        image("old:1", image_id="sha256:running"),
        image("other:1", managed=False),  # not ours
        image("gone:1"),  # unused
        network("1_default"),
        running_for(tgt, "a1", "web", "c1", image_docker_id="sha256:running"),
    )
    p = plan(current, tgt, PlanContext())
    assert p.apps["a1"].status == UpdateStatus.DONE
    assert p.steps == (RemoveImage(image_id_for("gone:1"), ("gone:1",)),)
    assert plan(current, tgt, PlanContext(cleanup_images=False)).steps == ()


def test_no_cleanup_until_every_app_is_settled():
    tgt = target(
        {
            "a1": app(1, release("r1", {"web": svc("web:1")})),
            "a2": app(2, release("r1", {"web": svc("web:2")})),
        }
    )
    current = state(
        image("web:1"),
        image("gone:1"),
        network("1_default"),
        network("2_default", 2, "a2"),
        running_for(tgt, "a1", "web", "c1"),
    )
    p = plan(current, tgt, PlanContext())
    assert p.steps == (Pull("web:2", "a2", ("web",)),)
    assert p.apps["a1"].status == UpdateStatus.DONE
    assert p.apps["a2"].status == UpdateStatus.DOWNLOADING


# --- ordering, determinism, speed -----------------------------------------------------------


def test_steps_are_ordered_by_kind_then_app_then_service():
    tgt = target(
        {
            "b": app(
                2,
                release(
                    "r2", {"y": svc("y:1"), "x": svc("x:1"), "w": svc("w:1")}, networks={"n": {}}
                ),
            ),
            "a": app(1, release("r1", {"z": svc("z:1")})),
            "d": app(4, release("r1", {"v": svc("v:1")})),
        }
    )
    b_w = running_for(tgt, "b", "w", "b-w", release_uuid="r1")
    current = state(
        image("y:1"),
        image("x:1"),
        image("z:1"),
        image("w:1"),
        network("1_default", 1, "a"),
        network("2_default", 2, "b"),
        network("4_default", 4, "d"),
        container("old-b", "b", "gone", app_id=2),
        container("old-a", "a", "gone", app_id=1),
        container("removed", "c", "svc", app_id=3),
        b_w,
    )
    p = plan(current, tgt, PlanContext())
    assert described(p.steps) == [
        "CreateNetwork 2_n",
        "Pull v:1 for v",
        "Kill old-a",
        "Kill old-b",
        "Kill removed",
        "Start a/z",
        "Start b/x",
        "Start b/y",
        "UpdateMetadata b-w -> r2",
    ]
    assert plan(current, tgt, PlanContext()) == p


def test_no_container_steps_while_any_image_of_the_app_is_missing():
    old = two_service_target("web:1", "r1", 1)
    new = target(
        {
            "a1": app(
                1,
                release(
                    "r2",
                    {
                        "db": svc("db:2"),
                        "web": svc("web:1", composition={"depends_on": ["db"]}),
                        "extra": svc("extra:1"),
                    },
                    rid=2,
                ),
            )
        }
    )
    current = old_release_state(old, container("c-gone", "a1", "gone"))
    p = plan(current, new, PlanContext())
    assert not any(isinstance(s, CONTAINER_STEPS) for s in p.steps)
    assert p.apps["a1"].missing_images == ("db:2", "extra:1")


def big_target(n_apps: int = 4, per_app: int = 50):
    apps = {}
    for a in range(n_apps):
        services = {
            f"s{i:03d}": svc(
                f"img{i % 7}:{a}",
                environment={"N": str(i)},
                composition={
                    "depends_on": [f"s{i - 1:03d}"] if i else [],
                    "volumes": ["data:/data"],
                },
            )
            for i in range(per_app)
        }
        apps[f"app-{a}"] = app(a + 1, release("r1", services, volumes={"data": {}}))
    return target(apps)


def test_plan_of_200_services_takes_under_20ms():
    tgt = big_target()
    # converge once so the timed plan sees 200 running containers plus some work to do
    final, _ = converge(state(), tgt, passes=60)
    assert len(final.containers) == 200
    half = replace(final, containers=final.containers[::2])
    for current in (state(), final, half):
        plan(current, tgt, PlanContext())  # warm up
        best = min(_timed(current, tgt) for _ in range(5))
        assert best < 0.020, f"plan took {best * 1000:.1f} ms"


def _timed(current, tgt) -> float:
    start = time.perf_counter()
    plan(current, tgt, PlanContext())
    return time.perf_counter() - start


# --- the simulator itself -------------------------------------------------------------------


def test_sim_engine_refuses_what_a_real_engine_would():
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    a1 = tgt.apps["a1"]
    engine = SimEngine(state(), tgt)
    with pytest.raises(AssertionError, match="before web:1 was pulled"):
        engine.apply(Start(a1, rel(tgt).services["web"]))
    engine.apply(Pull("web:1", "a1", ("web",)))
    with pytest.raises(AssertionError, match="no network default"):
        engine.apply(Start(a1, rel(tgt).services["web"]))
    engine.apply(CreateNetwork(a1, NetworkSpec("default")))
    after = engine.apply(Start(a1, rel(tgt).services["web"]))
    (c,) = after.containers
    assert (c.status, c.config_hash, c.image_docker_id) == (
        ContainerStatus.RUNNING,
        rel(tgt).services["web"].config_hash(),
        image_id_for("web:1"),
    )
    with pytest.raises(AssertionError, match="engine would answer 409"):
        engine.apply(RemoveImage(image_id_for("web:1")))
    engine.apply(Kill(c))
    assert engine.apply(RemoveImage(image_id_for("web:1"))).images == ()


def test_app_built_directly_without_release_uuid_still_converges():
    parsed = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    spec = replace(parsed.apps["a1"], release_uuid=None)
    tgt = replace(parsed, apps={"a1": spec})
    current = state(
        image("web:1"),
        network("1_default"),
        running_for(parsed, "a1", "web", "c1", release_uuid="r0"),
    )
    final, plans = converge(current, tgt)
    assert described(plans[0].steps) == ["UpdateMetadata c1 -> r1"]
    assert plans[-1].apps["a1"].release_uuid == "r1"
    assert [c.release_uuid for c in final.containers] == ["r1"]
