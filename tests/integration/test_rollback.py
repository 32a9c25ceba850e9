"""Probation and automatic rollback (issue 14, point 1) against the real engine: a release
whose service keeps exiting 1, or whose healthcheck fails, is rolled back to the previous
release within its probation, reported `aborted` with the reason, and not applied again on
the following polls nor after a restart, until a forced update; a release that passes frees
the previous release's images; a SIGKILL in the middle of a rollback converges."""

from __future__ import annotations

import html
import time
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import (
    APP,
    CONFIG,
    EXIT_1,
    LOOP,
    crash_at,
    exec_ok,
    has_image,
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
    device.cloud.set_target(device.uuid, target("r2", 2, images.main_v3, EXIT_1))
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


def test_release_that_passes_probation_frees_the_previous_images(
    device: Device, images: Images
) -> None:
    deploy_good(device, images)
    longer = target("r2", 2, images.main_v3, LOOP)
    longer["config"] = {**CONFIG, "BALENA_DEVICE_AGENT_PROBATION_S": "8"}
    device.cloud.set_target(device.uuid, longer)
    wait_status(device, "r2", "done")
    device.agent.wait_for_event("probation_started", 10, release="r2")
    time.sleep(2)  # passes have run since `done`: unused images would be gone by now
    assert device.agent.events_named("probation_passed")[-1].get("release") != "r2"
    assert has_image(device, images.main_v1), "r1's image removed during r2's probation"
    device.agent.wait_for_event("probation_passed", 30, release="r2")
    wait_until(
        lambda: not has_image(device, images.main_v1),
        30,
        message=lambda: device.agent.log_tail(30),
    )
    assert has_image(device, images.main_v3)


def test_unhealthy_service_is_rolled_back(device: Device, images: Images) -> None:
    deploy_good(device, images)
    check = {"test": ["CMD", "false"], "interval": "1s", "retries": 1}
    device.cloud.set_target(device.uuid, target("r2", 2, images.main_v3, LOOP, healthcheck=check))
    wait_status(device, "r2", "aborted", timeout=60)
    aborted = device.agent.wait_for_event("release_aborted", 5, release="r2")
    assert aborted["reason"].startswith("rolled back: main not healthy after "), aborted
    wait_running(device, "r1")


def test_first_release_that_fails_is_aborted_and_left_to_the_restart_policy(
    device: Device, images: Images
) -> None:
    device.cloud.set_target(device.uuid, target("r1", 1, images.main_v1, EXIT_1))
    device.agent.start()
    wait_status(device, "r1", "aborted", timeout=60)
    aborted = device.agent.wait_for_event("release_aborted", 5, release="r1")
    assert aborted["reason"].endswith("no previous release to go back to"), aborted
    first = main_container(device).id
    time.sleep(3)
    assert main_container(device).id == first  # the engine restarts it; the agent leaves it


@pytest.mark.parametrize("point", ["rollback_started:1", "step_started:3", "step_done:4"])
def test_sigkill_mid_rollback_converges(device: Device, images: Images, point: str) -> None:
    deploy_good(device, images)
    device.agent.stop()
    device.cloud.set_target(device.uuid, target("r2", 2, images.main_v3, EXIT_1))
    # this run: r2's apply (steps 1-2), its rollback (3: kill r2's main, 4: start r1's)
    crash_at(device, point)
    assert device.agent.events_named("release_aborted"), device.agent.log_tail(30)
    device.agent.start()
    wait_running(device, "r1")
    wait_status(device, "r2", "aborted", timeout=30)
    time.sleep(2)
    wait_running(device, "r1", timeout=1)
    assert device.update_status(APP) == ("r2", "aborted")


def test_rollback_waits_for_the_update_lock(device: Device, images: Images) -> None:
    deploy_good(device, images)
    check = {"test": ["CMD", "false"], "interval": "1s", "retries": 1}
    r2 = target("r2", 2, images.main_v3, LOOP, healthcheck=check)
    r2["config"] = {
        "BALENA_DEVICE_AGENT_PROBATION_S": "20",
        "BALENA_DEVICE_AGENT_HEALTH_DEADLINE_S": "6",
    }
    device.cloud.set_target(device.uuid, r2)
    wait_status(device, "r2", "done")
    failing = wait_running(device, "r2")
    exec_ok(device, "main", "touch /tmp/balena/updates.lock")
    wait_status(device, "r2", "aborted", timeout=30)
    time.sleep(3)  # the decision is taken; the lock holds the rollback back
    assert main_container(device).id == failing
    wait_until(
        lambda: "update lock held by main" in (reported_reason(device, "r2") or ""),
        10,
        message=lambda: str(device.state()["current"]),
    )
    assert reported_reason(device, "r2").startswith("rolled back: main not healthy after ")
    exec_ok(device, "main", "rm /tmp/balena/updates.lock")
    wait_running(device, "r1", timeout=30)
    assert device.update_status(APP) == ("r2", "aborted")
