"""Update windows on the real engine (issue 14, point 2): a release outside the window downloads
and waits at `downloaded` with the reason; the window's opening, a forced update or (for
`manual`) any POST /v1/update applies it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, APP_ID, cli, ids, release, wait_status

WINDOW = "BALENA_DEVICE_AGENT_UPDATE_WINDOW"
ZONE = {"BALENA_DEVICE_AGENT_UPDATE_WINDOW_TZ": "UTC"}
WAITING = re.compile(
    r"^waiting for the update window \(next: (Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d:\d\d\)$"
)


def hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def far_window() -> str:
    """A one-minute window twelve hours from now (UTC), so never open during the test."""
    start = datetime.now(UTC) + timedelta(hours=12)
    return f"{hhmm(start)}-{hhmm(start + timedelta(minutes=1))}"


def reported_reason(dev: Device, release_uuid: str) -> str | None:
    app = dev.state()["current"].get("apps", {}).get(APP, {})
    return app.get("releases", {}).get(release_uuid, {}).get("update_reason")


def start_on_r1(dev: Device, images: Images, window: str) -> dict[str, str]:
    """r1 (a first install: never held) running with `window` set, the clock taken as synced."""
    dev.agent.write_config(clockSync="synced")
    dev.cloud.set_target(
        dev.uuid, release(images, "r1", 1, images.main_v1, config={WINDOW: window, **ZONE})
    )
    dev.agent.start()
    wait_status(dev, "r1", "done")
    return ids(dev)


def push_r2(dev: Device, images: Images, window: str) -> None:
    target = release(images, "r2", 2, images.main_v3, config={WINDOW: window, **ZONE})
    dev.cloud.set_target(dev.uuid, target)


def assert_held(dev: Device, before: dict[str, str], reason: re.Pattern[str] | str) -> None:
    wait_status(dev, "r2", "downloaded")
    matches = (
        (lambda r: bool(reason.match(r or "")))
        if isinstance(reason, re.Pattern)
        else (lambda r: r == reason)
    )
    wait_until(lambda: matches(reported_reason(dev, "r2")), 15, message="the reason reported")
    time.sleep(2)  # the point: still held two seconds on
    assert dev.update_status(APP) == ("r2", "downloaded")
    assert ids(dev) == before, "a held release touched the running containers"
    status = dev.agent.api("GET", "/v2/agent/status").body
    (app,) = status["apps"]
    assert app["updateStatus"] == "downloaded" and matches(app["reason"])
    assert app["currentRelease"] == "r1"
    assert status["device"]["updateWindow"]["holding"] is True
    metrics = dev.agent.api("GET", "/metrics").body
    assert f'device_agent_update_window_waiting{{app="demo",app_uuid="{APP}"}} 1.0' in metrics


@pytest.mark.fresh_images  # r2's history starts with "downloading"
def test_a_window_in_the_future_holds_at_downloaded_and_force_applies_now(device, images):
    window = far_window()
    before = start_on_r1(device, images, window)
    push_r2(device, images, window)
    assert_held(device, before, WAITING)
    status = device.agent.api("GET", "/v2/agent/status").body["device"]["updateWindow"]
    assert status["setting"] == window and 11 * 3600 < status["nextOpenSeconds"] <= 12 * 3600
    reason = reported_reason(device, "r2") or ""
    shown = cli(device, "status").stdout
    assert f"  update window: {window} ({reason})" in shown and f"  reason: {reason}" in shown
    page = device.cloud.page()  # the devcloud's Devices page: running r1, r2 waiting and why
    assert '<code data-running="' + APP + '">r1</code>' in page
    assert f'<code title="r2">r2</code> downloaded<small class="why">{reason}</small>' in page
    assert device.agent.api("POST", "/v1/update", {}).status == 204
    time.sleep(3)  # an update check is not a forced update: still held
    assert device.update_status(APP) == ("r2", "downloaded")
    assert device.agent.api("POST", "/v1/update", {"force": True}).status == 204
    wait_status(device, "r2", "done", timeout=30)
    assert ids(device)["main"] != before["main"]
    assert reported_reason(device, "r2") is None
    assert device.history(APP, "r2") == ["downloading", "downloaded", "applying changes", "done"]


def test_a_window_opening_in_a_few_seconds_applies_the_release_then(device, images):
    now = datetime.now(UTC)
    opens = (now + timedelta(seconds=75 if now.second > 40 else 60)).replace(
        second=0, microsecond=0
    )
    window = f"{hhmm(opens)}-{hhmm(opens + timedelta(minutes=10))}"
    before = start_on_r1(device, images, window)
    push_r2(device, images, window)
    assert_held(
        device, before, f"waiting for the update window (next: {opens.strftime('%a %H:%M')})"
    )
    assert time.time() < opens.timestamp(), "r2 took too long to download for this test"
    wait_status(device, "r2", "done", timeout=opens.timestamp() - time.time() + 60)
    applying = [
        h["t"]
        for h in device.state()["update_status_history"]
        if h["release_uuid"] == "r2" and h["status"] == "applying changes"
    ]
    assert (
        applying and min(applying) >= opens.timestamp() - 1.0
    )  # the report's clock is the cloud's
    print(f"window opened -> applying changes reported: {min(applying) - opens.timestamp():.2f} s")
    assert ids(device)["main"] != before["main"]


def test_manual_holds_until_an_app_asks_through_the_local_api(device, images):
    before = start_on_r1(device, images, "manual")
    push_r2(device, images, "manual")
    reason = "waiting for a manual update (POST /v1/update): update window is manual"
    assert_held(device, before, reason)
    app_key = device.agent.api_key(APP_ID)
    assert device.agent.api("POST", "/v1/update", {}, key=app_key).status == 204
    wait_status(device, "r2", "done", timeout=30)
    assert ids(device)["main"] != before["main"]


def test_an_unsynchronised_clock_waits_and_says_so(device, images):
    window = "00:00-24:00"  # always open, but the clock can't be trusted yet
    before = start_on_r1(device, images, window)
    device.agent.kill()
    device.agent.write_config(clockSync="unsynced")
    device.agent.start()
    push_r2(device, images, window)
    reason = (
        "waiting for the update window: the device's clock is not synchronised yet (no NTP sync)"
    )
    assert_held(device, before, reason)


def test_a_malformed_window_holds_and_says_why(device, images):
    before = start_on_r1(device, images, "")
    push_r2(device, images, "Mon-Fri 2-4")
    assert_held(
        device,
        before,
        re.compile(r"^holding updates: the update window setting is invalid .*'2' is not a time"),
    )
    errors = device.agent.api("GET", "/v2/agent/status").body["device"]["configErrors"]
    assert any(e.startswith(f"{WINDOW}: 'Mon-Fri 2-4'") for e in errors), errors


def test_a_failing_release_forced_outside_the_window_is_rolled_back_at_once(device, images):
    """The window holds new releases, never the way back from a failed one (issue 14, point 1)."""
    from tests.integration.demo_app import CONFIG, EXIT_1, LOOP, target, wait_running

    config = {**CONFIG, WINDOW: far_window(), **ZONE}
    device.agent.write_config(clockSync="synced")

    def release_with_window(rel: str, rid: int, image: str, command: list[str]) -> dict:
        doc = target(rel, rid, image, command)
        doc["config"] = config
        return doc

    device.cloud.set_target(device.uuid, release_with_window("r1", 1, images.main_v1, LOOP))
    device.agent.start()
    wait_status(device, "r1", "done")
    device.agent.wait_for_event("probation_passed", 30, release="r1")
    device.cloud.set_target(device.uuid, release_with_window("r2", 2, images.main_v3, EXIT_1))
    wait_status(device, "r2", "downloaded")
    wait_until(lambda: WAITING.match(reported_reason(device, "r2") or ""), 15, message="held")
    assert device.agent.api("POST", "/v1/update", {"force": True}).status == 204
    wait_status(device, "r2", "aborted", timeout=60)
    wait_running(device, "r1")  # back outside the window
