"""A release whose images never pull — here because its registry stays unreachable — is
`aborted` after maxPullAttempts, with the reason, while the running release keeps running;
a later good target recovers. (tests/integration covers a missing manifest; this is the
registry refusing every connection.)"""

from __future__ import annotations

import time

from testbed import ThrottledProxy
from tests.faults.conftest import FaultImages
from tests.faults.scenario import assert_converged_on, deploy_r1, r2, two_services
from tests.integration.conftest import Device
from tests.integration.demo_app import APP, wait_status


def test_unreachable_registry_aborts_the_release_then_a_good_one_recovers(
    device: Device, fault_images: FaultImages, slow_registry: ThrottledProxy
) -> None:
    device.agent.write_config(maxPullAttempts=3)
    ids = deploy_r1(device, fault_images)
    old_names = {c.name for c in device.containers()}
    slow_registry.cut()
    device.cloud.set_target(device.uuid, r2(fault_images))
    wait_status(device, "r2", "aborted", timeout=90)
    aborted = device.agent.wait_for_event("release_aborted", 5, release="r2")
    assert "3 failed pulls" in aborted["reason"], aborted
    assert len(device.agent.events_named("pull_failed")) >= 3
    # the reason is shown where a user looks (the local API's status)
    status = device.agent.api("GET", "/v2/agent/status").body
    (entry,) = [a for a in status["apps"] if a["appUuid"] == APP]
    assert entry["updateStatus"] == "aborted" and "3 failed pulls" in (entry["reason"] or "")
    services = device.by_service()
    assert {n: cs[0].id for n, cs in services.items()} == ids, "the running release was touched"
    assert all(len(cs) == 1 and cs[0].status == "running" for cs in services.values())
    assert device.history(APP, "r2")[-1] == "aborted"
    slow_registry.restore()
    t0 = time.time()
    device.cloud.set_target(
        device.uuid, two_services("r3", 3, fault_images.main_v2, fault_images.aux_v2)
    )
    assert_converged_on(device, "r3", old_names=old_names, since=t0)
