"""The real parts fail mid-update: dockerd restarted while the new release downloads, the
registry cut off in the middle of the pulls. The agent process rides it out (it logs the
error, backs off, re-plans from what the engine has) and converges on the new release with
the named volume's data intact — and `done` never reported early."""

from __future__ import annotations

import time

from testbed import PrivateEngine, ThrottledProxy
from tests.faults.conftest import FaultImages
from tests.faults.scenario import assert_converged_on, deploy_r1, r2
from tests.helpers import wait_bytes_down
from tests.integration.conftest import MIB, Device
from tests.integration.demo_app import APP, wait_status


def test_dockerd_restarted_mid_update(
    device: Device, fault_images: FaultImages, engine: PrivateEngine, slow_registry: ThrottledProxy
) -> None:
    device.agent.write_config(maxPullAttempts=50)
    deploy_r1(device, fault_images)
    old_names = {c.name for c in device.containers()}
    pid = device.agent.pid
    slow_registry.set_rate(MIB // 2)  # r2's ~3 MiB take ~6 s
    t0 = time.time()
    start = slow_registry.bytes_down
    device.cloud.set_target(device.uuid, r2(fault_images))
    wait_status(device, "r2", "downloading")
    wait_bytes_down(slow_registry, start, 3 * MIB // 4)
    engine.restart()
    restarted = time.time()
    slow_registry.set_rate(None)
    assert_converged_on(device, "r2", old_names=old_names, since=t0, timeout=120)
    assert device.agent.running and device.agent.pid == pid, "the agent died with dockerd"
    # the agent noticed: its pull (or its pass) failed against the restarting engine
    noticed = [
        e
        for e in device.agent.events()
        if e.get("event") in ("pull_failed", "engine_unavailable", "step_failed", "apply_failed")
    ]
    assert noticed, f"no error logged for the engine restart at {restarted}"


def test_registry_cut_mid_pull_then_restored(
    device: Device, fault_images: FaultImages, slow_registry: ThrottledProxy
) -> None:
    device.agent.write_config(maxPullAttempts=50)
    ids = deploy_r1(device, fault_images)
    old_names = {c.name for c in device.containers()}
    pid = device.agent.pid
    slow_registry.set_rate(MIB // 2)
    t0 = time.time()
    start = slow_registry.bytes_down
    device.cloud.set_target(device.uuid, r2(fault_images))
    device.agent.wait_for_event("pull_started", 30)
    wait_bytes_down(slow_registry, start, MIB // 2)
    slow_registry.cut()
    # dockerd retries a broken layer download itself for a while (the pull may fail or hang)
    time.sleep(4)
    # meanwhile the running release keeps serving, untouched, and r2 is not further along
    assert device.update_status(APP) == ("r2", "downloading")
    services = device.by_service()
    assert {n: cs[0].id for n, cs in services.items()} == ids
    assert all(len(cs) == 1 and cs[0].status == "running" for cs in services.values())
    slow_registry.restore()
    slow_registry.set_rate(None)
    assert_converged_on(device, "r2", old_names=old_names, since=t0, timeout=120)
    assert device.agent.running and device.agent.pid == pid
