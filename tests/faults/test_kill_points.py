"""SIGKILL the agent at 20 points of a two-service update (each pull, each apply step, the
hand-over wait, state writes, each update-status change): after a restart it always converges
on the new release, with the named volume's data intact and `done` reported once, never early.

The kill comes from the agent itself (testbed/testhooks.py, test only): the n-th time it logs
the event, or reaches the state write, it SIGKILLs itself — an exact power cut."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FaultImages
from tests.faults.scenario import assert_converged_on, deploy_r1, r2
from tests.integration.conftest import Device
from tests.integration.demo_app import APP, crash_at

# In the order the update reaches them (r1 → r2: pull both images, kill main, start the new aux
# beside the old one, start main, wait for aux's hand-over, kill the old aux, done).
KILL_POINTS = [
    "state_write.target:1",  # the new target, written but not yet renamed over the old one
    "update_status_changed:1",  # downloading
    "pull_started:1",
    "pull_started:2",
    "pull_done:1",
    "state_write.images:1",  # the record of images the agent pulled
    "pull_done:2",
    "update_status_changed:2",  # downloaded
    "update_status_changed:3",  # applying changes
    "state_write.status:2",
    "step_started:1",  # kill the old main
    "step_done:1",
    "step_started:2",  # start the new aux beside the old one
    "step_done:2",
    "apply_waiting:1",  # aux hands over
    "step_started:3",  # start the new main
    "step_done:3",
    "step_started:4",  # kill the old aux once the new one said handover-complete
    "update_status_changed:4",  # done, not yet persisted nor reported
    "update_status_reported:4",  # done reported, the acknowledgement not yet persisted
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_mid_update_then_restart_converges(
    point: str, device: Device, fault_images: FaultImages
) -> None:
    deploy_r1(device, fault_images)
    old_names = {c.name for c in device.containers()}
    assert device.agent.stop() == 0
    t0 = time.time()
    device.cloud.set_target(device.uuid, r2(fault_images))
    crash_at(device, point)
    # whatever the cloud saw before the crash, it never saw `done` early
    status = device.update_status(APP)
    if status == ("r2", "done"):
        assert point.startswith("update_status_reported"), f"done reported before {point}"
    device.agent.start()
    assert_converged_on(device, "r2", old_names=old_names, since=t0)
