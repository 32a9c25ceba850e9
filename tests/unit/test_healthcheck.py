"""loop_health: when /v1/healthy says the poll or the apply loop is stuck."""

from __future__ import annotations

from typing import Any

from agent.healthcheck import APPLY_IDLE_LIMIT_S, MIN_APPLY_BUSY_S, loop_health

NOW = 1_000_000.0


def check(**kw: Any) -> tuple[bool, str]:
    args: dict[str, Any] = {
        "last_poll_attempt": NOW - 1,
        "poll_interval_s": 900.0,
        "request_timeout_s": 59.0,
        "last_apply_pass": NOW - 1,
        "apply_busy_since": None,
        "has_target": True,
        "downloading": False,
    }
    args.update(kw)
    return loop_health(NOW, **args)


def test_fresh_agent_is_healthy():
    assert check() == (True, "ok")
    assert check(last_poll_attempt=None, last_apply_pass=None, has_target=False)[0]


def test_poll_attempts_older_than_two_intervals_plus_timeout_are_stuck():
    assert check(last_poll_attempt=NOW - (2 * 900 + 59) + 1)[0]
    ok, reason = check(last_poll_attempt=NOW - (2 * 900 + 59) - 1)
    assert not ok and reason.startswith("poll loop stuck")


def test_short_interval_scales_the_poll_limit():
    assert not check(poll_interval_s=1.0, request_timeout_s=5.0, last_poll_attempt=NOW - 8)[0]
    assert check(poll_interval_s=1.0, request_timeout_s=5.0, last_poll_attempt=NOW - 6)[0]


def test_a_long_pass_is_stuck_unless_it_downloads():
    busy = NOW - 2 * 900 - 1
    ok, reason = check(apply_busy_since=busy)
    assert not ok and "one pass running" in reason
    assert check(apply_busy_since=busy, downloading=True)[0]
    assert check(apply_busy_since=NOW - 2 * 900 + 1)[0]


def test_busy_limit_has_a_floor_for_short_intervals():
    assert check(poll_interval_s=1.0, apply_busy_since=NOW - MIN_APPLY_BUSY_S + 1)[0]
    assert not check(poll_interval_s=1.0, apply_busy_since=NOW - MIN_APPLY_BUSY_S - 1)[0]


def test_an_idle_loop_with_a_target_must_keep_passing():
    ok, reason = check(last_apply_pass=NOW - APPLY_IDLE_LIMIT_S - 1)
    assert not ok and "no pass" in reason
    # without a target the loop sleeps until one comes: that is not stuck
    assert check(last_apply_pass=NOW - 10_000, has_target=False)[0]
    # never passed yet (just started): fine
    assert check(last_apply_pass=None)[0]


def test_poll_is_checked_before_apply():
    ok, reason = check(last_poll_attempt=NOW - 10_000, apply_busy_since=NOW - 10_000)
    assert not ok and reason.startswith("poll loop")


def test_health_check_reads_the_running_parts():
    """`HealthCheck` (what /v1/healthy calls) feeds loop_health from the poller, the apply loop
    and the status board: a long pass is fine while an app downloads, stuck otherwise."""
    from types import SimpleNamespace

    from agent.healthcheck import REQUIRED_TASKS, HealthCheck
    from agent.model import UpdateStatus

    tasks = SimpleNamespace(given_up={}, names=lambda: set(REQUIRED_TASKS))
    poller = SimpleNamespace(last_attempt_at=NOW - 1)
    apply = SimpleNamespace(last_pass_at=NOW - 1, busy_since=NOW - 5000, target=object())
    app = SimpleNamespace(update_status=UpdateStatus.DOWNLOADING)
    status = SimpleNamespace(apps={"a": app})
    health = HealthCheck(tasks, poller, apply, status, lambda: 900.0, 59.0)
    assert health(NOW) == (True, "ok")
    app.update_status = UpdateStatus.DOWNLOADED
    ok, reason = health(NOW)
    assert not ok and reason.startswith("apply loop stuck: one pass running for 5000s")
