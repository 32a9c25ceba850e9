"""The probation verdicts (agent/reconcile/probation.py): pure, judged at chosen instants."""

from __future__ import annotations

from agent.model import ContainerStatus, UpdateStatus
from agent.reconcile.planner import plan
from agent.reconcile.probation import (
    ServiceObs,
    Thresholds,
    Verdict,
    fleet_thresholds,
    judge,
    service_thresholds,
)
from agent.reconcile.steps import PlanContext, RemoveImage
from tests.unit.reconcile.factories import (
    app,
    image,
    image_id_for,
    release,
    running_for,
    state,
    svc,
    target,
)

T = Thresholds(probation_s=300, max_restarts=3, health_deadline_s=60)


def obs(**kw: object) -> ServiceObs:
    base: dict[str, object] = {"service": "web", "thresholds": T, "status": "running"}
    return ServiceObs(**{**base, **kw})  # type: ignore[arg-type]


def test_a_running_release_passes_only_once_probation_is_over() -> None:
    assert judge([obs()], since=1000, now=1299, probation_s=300) == Verdict()
    assert judge([obs()], since=1000, now=1300, probation_s=300) == Verdict(passed=True)


def test_probation_waits_for_a_deadline_beyond_its_end() -> None:
    slow = obs(health="starting", thresholds=Thresholds(health_deadline_s=600))
    assert judge([slow], since=1000, now=1300, probation_s=300) == Verdict()
    assert judge([slow], 1000, 1600, 300).failure == "web not healthy after 600 s (starting)"
    healthy = obs(health="healthy", thresholds=Thresholds(health_deadline_s=600))
    assert judge([healthy], 1000, 1300, 300) == Verdict(passed=True)


def test_more_restarts_than_allowed_fail_with_count_time_and_exit_code() -> None:
    three = obs(status="restarting", restart_count=3, exit_code=1)
    assert judge([three], 1000, 1040, 300) == Verdict()
    four = obs(status="restarting", restart_count=4, exit_code=1)
    assert judge([four], 1000, 1040, 300).failure == "web exited 5 times in 40 s (exit 1)"
    up_again = obs(status="running", restart_count=4, exit_code=1)
    assert judge([up_again], 1000, 1040, 300).failure == "web exited 4 times in 40 s (exit 1)"


def test_an_exit_non_zero_that_stays_exited_fails_and_exit_zero_does_not() -> None:
    assert judge([obs(status="exited", exit_code=2)], 1000, 1001, 300).failure == (
        "web exited (exit 2)"
    )
    assert judge([obs(status="exited", exit_code=0)], 1000, 1001, 300) == Verdict()


def test_a_healthcheck_not_healthy_by_start_period_plus_deadline_fails() -> None:
    starting = obs(health="starting", start_period_s=30)
    assert judge([starting], 1000, 1089, 300) == Verdict()
    assert judge([starting], 1000, 1090, 300).failure == "web not healthy after 90 s (starting)"
    unhealthy = obs(health="unhealthy")
    assert judge([unhealthy], 1000, 1060, 300).failure == "web not healthy after 60 s (unhealthy)"
    assert judge([obs(health="healthy")], 1000, 1060, 300) == Verdict()


def test_a_service_that_never_starts_fails_after_the_deadline() -> None:
    assert judge([obs(status=None)], 1000, 1059, 300) == Verdict()
    assert judge([obs(status=None)], 1000, 1060, 300).failure == (
        "web never started (no container after 60 s)"
    )
    created = obs(status="created", ever_started=False)
    assert judge([created], 1000, 1060, 300).failure == "web never started (created after 60 s)"


def test_a_service_labelled_off_is_not_judged_and_labels_override_the_fleet() -> None:
    off = service_thresholds(T, {"io.device-agent.rollback": "0"})
    assert judge([obs(thresholds=off, status="exited", exit_code=1)], 1000, 1001, 300) == Verdict()
    lenient = service_thresholds(T, {"io.device-agent.max-restarts": "10"})
    assert lenient.max_restarts == 10 and lenient.health_deadline_s == 60
    assert judge([obs(thresholds=lenient, restart_count=5)], 1000, 1010, 300) == Verdict()
    ignored = service_thresholds(T, {"io.device-agent.max-restarts": "many"})
    assert ignored == T


def test_the_first_failing_service_by_name_is_named() -> None:
    a = obs(service="api", status="exited", exit_code=3)
    b = obs(service="web", status="exited", exit_code=1)
    assert judge([b, a], 1000, 1001, 300).failure == "api exited (exit 3)"


def test_fleet_config_vars_with_balena_or_resin_prefix_and_bad_values_reported() -> None:
    assert fleet_thresholds({}) == (Thresholds(), [])
    got, errors = fleet_thresholds(
        {
            "BALENA_DEVICE_AGENT_ROLLBACK": "off",
            "RESIN_DEVICE_AGENT_PROBATION_S": "5",
            "BALENA_DEVICE_AGENT_MAX_RESTARTS": "1",
            "BALENA_DEVICE_AGENT_HEALTH_DEADLINE_S": "soon",
        }
    )
    assert got == Thresholds(enabled=False, probation_s=5, max_restarts=1, health_deadline_s=60)
    assert errors == ["BALENA_DEVICE_AGENT_HEALTH_DEADLINE_S: 'soon' is not a number; keeping 60.0"]
    assert fleet_thresholds({"BALENA_DEVICE_AGENT_PROBATION_S": "-1"})[0].probation_s == 300


def test_the_planner_keeps_the_images_it_is_told_to_keep_and_removes_them_after() -> None:
    tgt = target({"a1": app(1, release("r2", {"web": svc("web:2")}))})
    current = state(
        image("web:1"), image("web:2"), running_for(tgt, "a1", "web", "c2", image_ref="web:2")
    )
    kept = plan(current, tgt, PlanContext(keep_images=frozenset({"web:1"})))
    assert kept.apps["a1"].status is UpdateStatus.DONE
    assert not [s for s in kept.steps if isinstance(s, RemoveImage)]
    freed = plan(current, tgt, PlanContext())
    removes = [s for s in freed.steps if isinstance(s, RemoveImage)]
    assert removes == [RemoveImage(image_id_for("web:1"), ("web:1",))]


def test_an_aborted_release_is_planned_as_nothing_to_do() -> None:
    tgt = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    current = state(
        image("web:1"), running_for(tgt, "a1", "web", "c1", status=ContainerStatus.EXITED)
    )
    p = plan(current, tgt, PlanContext(aborted={"r1": "failed: web exited (exit 1)"}))
    assert p.apps["a1"].status is UpdateStatus.ABORTED and p.steps == ()
    assert p.apps["a1"].reason == "failed: web exited (exit 1)"
