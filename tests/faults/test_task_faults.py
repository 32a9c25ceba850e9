"""An unexpected error (a RuntimeError, no AgentError) raised at an exact point of an update —
inside an apply pass, inside the poll task, inside the report task — kills no task: the pass
fails and is retried (`apply_pass_failed`), or the task is restarted (`task_crashed`, then
`task_restarted`), each logged with its stack; the update still converges with the data kept,
`done` reported once, and the agent stays healthy.

The error comes from the agent itself (testbed/testhooks.py, test only:
$DEVICE_AGENT_TEST_RAISE_AT="<log event>:<n>" raises at the n-th time the event is logged)."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FaultImages
from tests.faults.scenario import assert_converged_on, deploy_r1, r2
from tests.integration.conftest import Device

HOOKS = "DEVICE_AGENT_TEST_HOOKS"
RAISE_AT = "DEVICE_AGENT_TEST_RAISE_AT"

CASES = [
    # point, the event that handles it, the task named in it (None: the pass, not a task)
    ("apply_pass:1", "apply_pass_failed", None),
    ("target_fetched:1", "task_crashed", "poll"),
    ("update_status_reported:1", "task_crashed", "report"),
]


@pytest.mark.parametrize(("point", "handled_by", "task"), CASES)
def test_an_unexpected_error_fails_once_and_the_update_goes_on(
    point: str, handled_by: str, task: str | None, device: Device, fault_images: FaultImages
) -> None:
    deploy_r1(device, fault_images)
    old_names = {c.name for c in device.containers()}
    assert device.agent.stop() == 0
    t0 = time.time()
    device.cloud.set_target(device.uuid, r2(fault_images))
    device.agent.env = {HOOKS: "1", RAISE_AT: point}
    device.agent.start()

    event = device.agent.wait_for_event(handled_by, 60)
    assert event["error"].startswith(("TestHookError: test hook: raised at", "TestHookError("))
    assert "Traceback (most recent call last)" in event["exception"]  # the stack
    assert "TestHookError: test hook: raised at" in event["exception"]
    if task is not None:
        assert event["task"] == task
        device.agent.wait_for_event("task_restarted", 10, task=task)
    else:
        device.agent.wait_for_event("apply_retry_scheduled", 10, attempt=1)

    assert_converged_on(device, "r2", old_names=old_names, since=t0)
    assert device.agent.running
    assert not device.agent.events_named("task_given_up")
    assert device.agent.api("GET", "/v1/healthy", key=None).status == 200
    status = device.agent.api("GET", "/v2/agent/status").body
    assert [a["reason"] for a in status["apps"]] == [None]  # cleared by the passes after
    device.agent.env = {}
