"""SIGKILL the agent at a few points of a two-service update (the new target half written,
mid-pull, mid-kill, mid-handover, mid-start, after `done` was reported): after a restart it
always converges on the new release, with the named volume's data intact and `done` reported
once, never early.

The kill comes from the agent itself (testbed/testhooks.py, test only): the n-th time it logs
the event, or reaches the state write, it SIGKILLs itself — an exact power cut."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FaultImages
from tests.faults.scenario import assert_converged_on, deploy_r1, r2
from tests.integration.conftest import Device
from tests.integration.demo_app import APP, crash_at

# A few representative points, in the order the update reaches them (r1 → r2: pull both images,
# kill main, start the new aux beside the old one, start main, wait for aux's hand-over, kill the
# old aux, done). Every point of the update is killed at in the fake-engine tier
# (tests/fakeengine/test_kill_points.py, in milliseconds); these prove it with a real SIGKILL,
# a real engine mid-change and a real cloud.
KILL_POINTS = [
    # the new target written but not yet renamed over the old one (only the real agent's poller
    # persists the target: the fake tier can't reach this point)
    "state_write.target:1",
    "pull_started:2",  # mid-pull: one image pulling, the other not yet
    "step_started:1",  # mid-kill: the old main
    "apply_waiting:1",  # mid-handover: the new aux beside the old one
    "step_started:3",  # mid-start: the new main
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
