"""Probation and automatic rollback (issue 14, point 1) against the real engine: a release
whose service keeps exiting 1 (the engine's restart policy restarting it), or whose real
healthcheck fails, is rolled back to the previous release within its probation, reported
`aborted` with the reason, and not applied again on the following polls nor after a restart,
until a forced update; a real SIGKILL in the middle of a rollback converges. The rest of the
decisions (a first release that fails, images kept during probation, a rollback held by an
update lock, a kill at each point of a rollback) are in the fake-engine tier
(tests/fakeengine/test_rollback.py)."""

from __future__ import annotations

import html
import time
from typing import Any

from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import (
    APP,
    CONFIG,
    EXIT_1,
    LOOP,
    crash_at,
    main_container,
    target,
    wait_running,
    wait_status,
)


def deploy_good(dev: Device, images: Images) -> str:
    """r1 runs and passes its probation; main's container id."""
    dev.cloud.set_target(dev.uuid, target("r1", 1, images.main_v1, LOOP))
    if not dev.agent.running:
        dev.agent.start()
    wait_status(dev, "r1", "done")
    dev.agent.wait_for_event("probation_passed", 30, release="r1")
    return wait_running(dev, "r1")


def exiting_r2(images: Images) -> dict[str, Any]:
    """r2, whose service exits 1 at once. Its probation is long enough for the engine's restart
    backoff (0.1 s doubling) to restart it more than 3 times however loaded the machine: in 3 s
    a slow run saw 3 restarts and passed r2."""
    r2 = target("r2", 2, images.main_v3, EXIT_1)
    r2["config"] = {**CONFIG, "BALENA_DEVICE_AGENT_PROBATION_S": "10"}
    return r2


def reported_running(dev: Device) -> str | None:
    """The release the device last reported running for the app."""
    current = dev.state()["current"]
    entry = current.get(dev.uuid, current)
    return (entry.get("apps") or {}).get(APP, {}).get("release_uuid")


def reported_reason(dev: Device, rel: str) -> Any:
    """The update_reason the device last reported for release `rel` of the app."""
    current = dev.state()["current"]
    entry = current.get(dev.uuid, current)
    app = (entry.get("apps") or {}).get(APP, {})
    return (app.get("releases") or {}).get(rel, {}).get("update_reason")


def test_exiting_release_rolled_back_aborted_not_reapplied_until_forced(
    device: Device, images: Images
) -> None:
    deploy_good(device, images)
    device.cloud.set_target(device.uuid, exiting_r2(images))
    wait_status(device, "r2", "aborted", timeout=60)
    aborted = device.agent.wait_for_event("release_aborted", 5, release="r2")
    assert aborted["reason"].startswith("rolled back: main exited "), aborted
    assert aborted["reason"].endswith("(exit 1)") and aborted["rollback_to"] == "r1"
    back = wait_running(device, "r1")
    wait_until(lambda: reported_running(device) == "r1", 10, message=lambda: str(device.state()))
    assert reported_reason(device, "r2") == aborted["reason"]
    # the devcloud's Devices page: r1 running, r2 aborted with the reason
    page = device.cloud.page()
    assert f'<code data-running="{APP}">r1</code>' in page
    assert f'<div data-waiting="{APP}"><code title="r2">r2</code> aborted' in page
    assert f'<small class="why">{html.escape(aborted["reason"])}</small>' in page

    # following polls are answered from the decision: r2 is not started again
    for _ in range(3):
        device.agent.api("POST", "/v1/update", {})
        time.sleep(1)
    assert main_container(device).id == back
    assert device.update_status(APP) == ("r2", "aborted")
    # nor after a restart
    device.agent.stop()
    device.agent.start()
    device.agent.wait_for_event("target_accepted", 20)
    time.sleep(4)
    assert main_container(device).id == back
    assert device.update_status(APP) == ("r2", "aborted")
    assert len(device.agent.events_named("release_aborted")) == 1

    # a forced update applies r2 again (judged again, and rolled back again)
    assert device.agent.api("POST", "/v1/update", {"force": True}).status == 204
    wait_until(
        lambda: len(device.agent.events_named("release_aborted")) == 2,
        60,
        message=lambda: device.agent.log_tail(30),
    )
    assert (
        len([e for e in device.agent.events_named("probation_started") if e.get("release") == "r2"])
        == 2
    )
    wait_running(device, "r1")


def test_unhealthy_service_is_rolled_back(device: Device, images: Images) -> None:
    deploy_good(device, images)
    check = {"test": ["CMD", "false"], "interval": "1s", "retries": 1}
    device.cloud.set_target(device.uuid, target("r2", 2, images.main_v3, LOOP, healthcheck=check))
    wait_status(device, "r2", "aborted", timeout=60)
    aborted = device.agent.wait_for_event("release_aborted", 5, release="r2")
    assert aborted["reason"].startswith("rolled back: main not healthy after "), aborted
    wait_running(device, "r1")


def test_sigkill_mid_rollback_converges(device: Device, images: Images) -> None:
    deploy_good(device, images)
    device.agent.stop()
    device.cloud.set_target(device.uuid, exiting_r2(images))
    # as the rollback starts: the decision is on disk, nothing of it done (the fake-engine tier
    # kills it at each of its steps too); a step count would depend on how r2's apply was split
    crash_at(device, "rollback_started:1")
    assert device.agent.events_named("release_aborted"), device.agent.log_tail(30)
    device.agent.start()
    wait_running(device, "r1")
    wait_status(device, "r2", "aborted", timeout=30)
    time.sleep(2)
    wait_running(device, "r1", timeout=1)
    assert device.update_status(APP) == ("r2", "aborted")
