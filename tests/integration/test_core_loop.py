"""The core loop end to end: devcloud → agent → real Docker engine and registry."""

from __future__ import annotations

import itertools
import time

from tests.helpers import wait_bytes_down, wait_until
from tests.integration.conftest import MIB
from tests.integration.demo_app import (
    APP,
    assert_converged,
    deploy_first,
    has_image,
    progress_seen,
    release,
    volume_file,
    wait_status,
)


def test_two_service_update_reports_every_stage_with_progress(device, images, slow_registry):
    ids = deploy_first(device, images)
    slow_registry.set_rate(2 * MIB)  # 24 MiB → ~12 s: longer than the 10 s progress throttle
    t0 = time.time()
    device.cloud.set_target(device.uuid, release(images, "r2", 2, images.main_v2))
    wait_status(device, "r2", "done", timeout=120)
    assert device.history(APP, "r2") == ["downloading", "downloaded", "applying changes", "done"]
    progress = progress_seen(device, "r2", t0)
    assert any(0 < p < 100 for p in progress), f"no intermediate progress in {progress}"
    assert_converged(device, "r2")
    services = device.by_service()
    assert services["aux"][0].id == ids["aux"], "unchanged service was recreated"
    assert services["main"][0].id != ids["main"]
    assert volume_file(device) == "keep"
    # the old release's image is removed once the release is done; the new one stays
    wait_until(lambda: not has_image(device, images.main_v1), 30, message="old image removed")
    assert has_image(device, images.main_v2)
    # the current release was reported as r1 until r2 was done
    r2_reports = [
        r["body"]["apps"][APP]
        for r in device.state(since=t0)["reports"]
        if APP in r["body"].get("apps", {})
    ]
    for report in r2_reports:
        status = report["releases"].get("r2", {}).get("update_status")
        expected = "r2" if status == "done" else "r1"
        assert report["release_uuid"] == expected, report


def test_service_removed_and_unchanged_one_carried_over(device, images):
    ids = deploy_first(device, images)
    device.cloud.set_target(device.uuid, release(images, "r3", 3, images.main_v1, with_aux=False))
    wait_status(device, "r3", "done")
    services = device.by_service()
    assert sorted(services) == ["main"]
    assert services["main"][0].id == ids["main"]  # same config: renamed, not restarted
    assert services["main"][0].name.endswith("_r3")
    assert volume_file(device) == "keep"


def test_sigkill_during_download_then_restart_converges(device, images, slow_registry):
    deploy_first(device, images)
    slow_registry.set_rate(2 * MIB)
    start = slow_registry.bytes_down
    device.cloud.set_target(device.uuid, release(images, "r2", 2, images.main_v2))
    wait_status(device, "r2", "downloading")
    wait_bytes_down(slow_registry, start, 4 * MIB)  # of 24
    device.agent.kill()
    assert device.update_status(APP) == ("r2", "downloading")
    slow_registry.set_rate(8 * MIB)
    device.agent.start()
    wait_status(device, "r2", "done", timeout=120)
    assert_converged(device, "r2")
    assert volume_file(device) == "keep"
    history = device.history(APP, "r2")
    assert history[-3:] == ["downloaded", "applying changes", "done"]
    assert history.count("done") == 1


def test_restart_without_cloud_recreates_removed_service(device, images):
    deploy_first(device, images)
    assert device.agent.stop() == 0
    (aux,) = device.by_service()["aux"]
    assert aux.status == "running", "SIGTERM must leave the apps running"
    aux.remove(force=True)
    device.agent.write_config(apiEndpoint="http://127.0.0.1:9")  # nothing listens there
    device.agent.start()
    device.agent.wait_for_event("target_accepted", 20, source="persisted")
    wait_until(
        lambda: [c.status for c in device.by_service().get("aux", [])] == ["running"],
        60,
        message=lambda: f"aux recreated; log:\n{device.agent.log_tail()}",
    )
    assert device.agent.events_named("poll_failed"), "the cloud should have been unreachable"
    assert volume_file(device) == "keep"


def test_service_removed_by_hand_while_running_is_back_at_once(device, images):
    """The engine's events wake the agent: it does not wait for its 5-minute recheck."""
    ids = deploy_first(device, images)
    (aux,) = device.by_service()["aux"]
    removed = time.monotonic()
    aux.remove(force=True)
    wait_until(
        lambda: (
            [(c.id != ids["aux"], c.status) for c in device.by_service().get("aux", [])]
            == [(True, "running")]
        ),
        20,
        message=lambda: f"aux recreated; log:\n{device.agent.log_tail()}",
    )
    print(f"recreated {time.monotonic() - removed:.1f}s after removal")
    assert device.by_service()["main"][0].id == ids["main"], "main must be left alone"
    assert volume_file(device) == "keep"


def test_malformed_targets_leave_running_apps_alone(device, images):
    ids = deploy_first(device, images)
    device.cloud.set_raw_target(device.uuid, [1, 2, 3])
    event = device.agent.wait_for_event("target_invalid", 20)
    assert "JSON object" in event["error"]
    device.cloud.set_raw_target(device.uuid, "{not json")
    device.agent.wait_for_event("poll_failed", 20)
    bad = release(images, "r9", 9, images.main_v3)
    bad["apps"][APP]["releases"]["r9"]["services"]["main"]["composition"]["depends_on"] = ["x"]
    device.cloud.set_target(device.uuid, bad)
    wait_status(device, "r9", "rejected")
    rejected = device.agent.wait_for_event("app_rejected", 5)
    assert "unknown service x" in rejected["reason"]
    services = device.by_service()
    assert {n: cs[0].id for n, cs in services.items()} == ids
    assert all(cs[0].status == "running" for cs in services.values())
    assert not has_image(device, images.main_v3)


def test_idle_device_sends_one_conditional_get_per_interval_and_no_report(device, images):
    deploy_first(device, images)
    time.sleep(3)  # let the last service-status report go out
    t0 = time.time()
    time.sleep(8)
    state = device.state(since=t0)
    assert state["reports"] == [], state["reports"]
    statuses = [p["status"] for p in state["polls"]]
    assert statuses and set(statuses) == {304}
    # 1 s interval + up to 10 % jitter: 7 to 8 polls in 8 s
    assert 6 <= len(statuses) <= 9, statuses


def test_fleet_config_vars_take_effect_and_bad_ones_are_reported(device, images):
    config = {"BALENA_SUPERVISOR_POLL_INTERVAL": "3000", "BALENA_SUPERVISOR_LOCAL_MODE": "maybe"}
    target = release(
        images, "r1", 1, images.main_v1, config=config, aux_image=images.aux_v1_by_tag
    )  # a tag, not a digest
    device.cloud.set_target(device.uuid, target)
    device.agent.start()
    wait_status(device, "r1", "done")
    assert device.by_service()["aux"][0].labels["io.balena.device-agent.image"].endswith(":v1")
    bad = device.agent.wait_for_event("config_var_invalid", 10)
    assert "BALENA_SUPERVISOR_LOCAL_MODE" in bad["error"]
    changed = device.agent.wait_for_event("config_changed", 10)
    assert changed["poll_interval_ms"] == 3000
    t0 = time.time()
    time.sleep(10)
    polls = [p["t"] for p in device.state(since=t0)["polls"]]
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert gaps and all(2.9 <= g <= 3.5 for g in gaps), gaps
