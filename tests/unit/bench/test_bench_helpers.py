"""The benchmarks' pure helpers (testbed/bench): statistics, scaling and the planner scenario."""

from __future__ import annotations

from collections import Counter

import pytest

from agent.reconcile.planner import plan
from agent.reconcile.steps import PlanContext
from testbed.bench.apply import ratio_summary
from testbed.bench.common import mean_poll_interval_s, per_day, percentile, summary
from testbed.bench.planner import changed_services, scenario, with_target_images


def test_percentile_is_a_measured_value_by_nearest_rank():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == 5.0
    assert percentile(values, 0) == 1.0
    assert percentile(list(range(1, 101)), 95) == 95
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_rounds_median_p95_min_max():
    assert summary([1.0, 2.0, 3.0, 10.0], 1) == {
        "median": 2.5,
        "p95": 10.0,
        "min": 1.0,
        "max": 10.0,
    }


def test_per_day_and_mean_poll_interval():
    assert per_day(3, 120) == pytest.approx(2160)
    with pytest.raises(ValueError):
        per_day(1, 0)
    assert mean_poll_interval_s(10) == pytest.approx(10.5)  # jitter 0..1 s
    assert mean_poll_interval_s(900) == pytest.approx(930)  # jitter 0..60 s (capped)


def test_ratio_summary_takes_ratios_per_repetition():
    rows = [
        {"agent_s": 2.0, "cli_s": 1.0},
        {"agent_s": 3.0, "cli_s": 3.0},
        {"agent_s": 1.0, "cli_s": 2.0},
    ]
    out = ratio_summary(rows)
    assert out["ratios"] == [2.0, 1.0, 0.5]
    assert out["ratio_median"] == 1.0
    assert (out["agent_s_median"], out["cli_s_median"]) == (2.0, 2.0)


def test_changed_services_are_spread_and_counted():
    assert changed_services(200, 20) == frozenset(range(0, 200, 10))
    assert changed_services(200, 0) == frozenset()
    with pytest.raises(ValueError):
        changed_services(10, 11)


def test_planner_scenario_has_200_running_services_and_20_changes():
    current, target = scenario()
    assert len(current.containers) == 200
    unchanged_current, unchanged = scenario(changes=0)
    assert plan(unchanged_current, unchanged, PlanContext()).steps == ()
    first = Counter(type(s).__name__ for s in plan(current, target, PlanContext()).steps)
    assert first == {"Pull": 10}  # download-then-kill: nothing stops before the images are in
    pulled = with_target_images(current, target)
    second = Counter(type(s).__name__ for s in plan(pulled, target, PlanContext()).steps)
    assert second == {"Kill": 20}
