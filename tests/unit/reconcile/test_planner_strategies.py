"""Example tests for update strategies (label io.balena.update.strategy) in the planner."""

from __future__ import annotations

from dataclasses import replace

from agent.model import ContainerStatus, UpdateStatus
from agent.reconcile.planner import plan
from agent.reconcile.steps import Kill, PlanContext, Pull, Start, StartContainer
from tests.unit.reconcile.factories import (
    app,
    described,
    image,
    network,
    release,
    running_for,
    state,
    svc,
    target,
)
from tests.unit.reconcile.sim import apply_all

NOW = 10_000.0


def web_target(image_ref: str, rel: str, strategy: str, **labels: str):
    return target(
        {
            "a1": app(
                1,
                release(
                    rel,
                    {
                        "web": svc(
                            image_ref, labels={"io.balena.update.strategy": strategy, **labels}
                        )
                    },
                    rid=int(rel[1:]),
                ),
            )
        }
    )


def deployed(strategy: str, **labels: str):
    old = web_target("web:1", "r1", strategy, **labels)
    current = state(
        image("web:1"),
        network("1_default"),
        running_for(old, "a1", "web", "c-old", created_at="100"),
    )
    return current, web_target("web:2", "r2", strategy, **labels)


def test_kill_then_download_stops_first_then_pulls():
    current, new = deployed("kill-then-download")
    p1 = plan(current, new, PlanContext())
    assert described(p1.steps) == ["Kill c-old"]
    assert p1.apps["a1"].status == UpdateStatus.DOWNLOADING
    p2 = plan(apply_all(current, p1.steps), new, PlanContext())
    assert [type(s) for s in p2.steps] == [Pull]


def test_delete_then_download_also_removes_the_old_image():
    current, new = deployed("delete-then-download")
    (kill,) = plan(current, new, PlanContext()).steps
    assert isinstance(kill, Kill) and kill.remove_image


def test_kill_first_waits_for_a_lock_like_any_other_stop():
    current, new = deployed("kill-then-download")
    p = plan(current, new, PlanContext(locked_apps=frozenset({1})))
    assert p.steps == ()
    assert p.apps["a1"].blocked_by_lock
    assert p.apps["a1"].status == UpdateStatus.DOWNLOADING


def test_unknown_strategy_is_download_then_kill():
    current, new = deployed("yolo")
    assert [type(s) for s in plan(current, new, PlanContext()).steps] == [Pull]


def hand_over_states(**labels: str):
    current, new = deployed("hand-over", **labels)
    current = apply_all(current, plan(current, new, PlanContext(now=NOW)).steps)  # pull
    p = plan(current, new, PlanContext(now=NOW))
    assert [type(s) for s in p.steps] == [Start], "the new one starts beside the old one"
    return apply_all(current, p.steps), new


def new_container(current):
    return next(c for c in current.containers if c.id != "c-old")


def test_hand_over_waits_for_the_signal_then_kills_the_old_one():
    current, new = hand_over_states()
    created = new_container(current).created_ts
    waiting = plan(current, new, PlanContext(now=created + 5))
    assert waiting.steps == () and waiting.apps["a1"].status == UpdateStatus.APPLYING_CHANGES
    assert "hands over" in waiting.apps["a1"].waiting_on[0]
    signalled = plan(
        current, new, PlanContext(now=created + 5, handover_done=frozenset({(1, "web")}))
    )
    assert described(signalled.steps) == ["Kill c-old"]


def test_hand_over_timeout_from_the_label():
    current, new = hand_over_states(**{"io.balena.update.handover-timeout": "2000"})
    created = new_container(current).created_ts
    assert plan(current, new, PlanContext(now=created + 1)).steps == ()
    assert described(plan(current, new, PlanContext(now=created + 2)).steps) == ["Kill c-old"]


def test_hand_over_never_kills_for_an_unhealthy_or_dead_replacement():
    current, new = hand_over_states()
    fresh = new_container(current)
    late = PlanContext(now=fresh.created_ts + 3600, handover_done=frozenset({(1, "web")}))
    for broken in (
        replace(fresh, health="unhealthy"),
        replace(fresh, health="starting"),
        replace(fresh, status=ContainerStatus.EXITED, exit_code=1),
    ):
        others = tuple(c for c in current.containers if c.id != fresh.id)
        p = plan(replace(current, containers=(*others, broken)), new, late)
        assert not [s for s in p.steps if isinstance(s, Kill)], broken
        assert p.apps["a1"].status == UpdateStatus.APPLYING_CHANGES
        assert "keeps serving" in p.apps["a1"].waiting_on[0]
    created_only = replace(fresh, status=ContainerStatus.CREATED)
    others = tuple(c for c in current.containers if c.id != fresh.id)
    p = plan(replace(current, containers=(*others, created_only)), new, late)
    assert [type(s) for s in p.steps] == [StartContainer]
