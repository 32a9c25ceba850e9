"""The per-service rate limiter, the reconnect backoff, and the system messages' wording."""

from __future__ import annotations

from agent.cloudlogs.ratelimit import RateLimiter
from agent.cloudlogs.sender import MAX_COOLDOWN_S, cooldown
from agent.cloudlogs.system import system_message


def test_a_flood_is_capped_per_service_and_counted():
    limiter = RateLimiter(rate=100, burst=200, notice_every_s=1.0)
    now = 1000.0
    allowed = sum(limiter.allow("flood", now + i / 10_000, i) for i in range(10_000))  # 1 s
    assert 200 <= allowed <= 310  # the burst plus one second at the rate
    assert all(limiter.allow("quiet", now + 1, 0) for _ in range(50))  # others unaffected
    dropped, first_ms, last_ms = limiter.notice("flood", now + 1.0) or (0, 0, 0)
    assert dropped == 10_000 - allowed and first_ms < last_ms
    assert limiter.notice("flood", now + 1.5) is None  # at most once a second
    assert limiter.pending() == []


def test_reconnect_waits_grow_from_5_s_to_5_min_with_jitter():
    assert cooldown(0) == 0
    assert cooldown(1, lambda: 1.0) == 5.0
    assert cooldown(1, lambda: 0.0) == 2.5
    assert cooldown(3, lambda: 1.0) == 20.0
    assert cooldown(30, lambda: 1.0) == MAX_COOLDOWN_S


def test_agent_events_are_worded_as_the_reference_words_them():
    def msg(**event: object) -> tuple[str, bool] | None:
        return system_message(event)

    assert msg(event="pull_started", image="reg/app@sha256:1") == (
        "Downloading image 'reg/app@sha256:1'",
        False,
    )
    assert msg(event="step_started", step="kill main_11_1_r1") == (
        "Killing service 'main_11_1_r1'",
        False,
    )
    # as the reference's objectNameForLogs: "<service name> <image>" (its Config.Image, the id)
    assert msg(
        event="step_started", step="kill main_11_1_r1", service="main", image="sha256:ab12"
    ) == ("Killing service 'main sha256:ab12'", False)
    assert msg(
        event="step_failed", step="kill main_11_1_r1", service="main", image="sha256:ab12",
        error="boom",
    ) == ("Failed to kill service 'main sha256:ab12' due to 'boom'", True)  # fmt: skip
    assert msg(event="step_done", step="start demo/main") == ("Installed service 'main'", False)
    assert msg(event="step_failed", step="start demo/main", error="boom") == (
        "Failed to install service 'main' due to 'boom'",
        True,
    )
    held = msg(event="lock_held", service="aux", path="/tmp/x/updates.lock")
    assert held is not None and held[0].startswith("Updates are locked")
    assert msg(event="app_rejected", app="demo", reason="bad")[0].startswith(  # type: ignore[index]
        "Could not move to new release"
    )
    assert msg(event="update_status_changed", status="done", app="demo", release="r2") == (
        "Update of 'demo' to release r2 done",
        False,
    )
    assert msg(event="update_status_changed", status="downloading") is None
    assert msg(event="download_progress") is None
