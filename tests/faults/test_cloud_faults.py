"""The cloud misbehaves (devcloud fault modes): it answers 500, 503 with Retry-After, holds the
request past the agent's timeout, closes the connection, sends malformed JSON or a body that
isn't a target. The agent keeps running the current release untouched, logs a clear error for
every failed poll, and applies the newer target as soon as the cloud is fixed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import (
    APP,
    assert_converged,
    deploy_first,
    release,
    volume_file,
    wait_status,
)

# mode → (the event the agent logs, words its error must contain)
FAULTS = {
    "500": ("poll_failed", "HTTP 500"),
    "503_retry_after": ("poll_failed", "HTTP 503"),
    "timeout": ("poll_failed", "timed out"),
    "close": ("poll_failed", "fetch target state"),
    "garbage": ("poll_failed", "not valid JSON"),
    "not_target": ("target_invalid", "no entry for device"),
}


def errors_since(dev: Device, name: str, skip: int, words: str) -> list[dict[str, Any]]:
    return [e for e in dev.agent.events_named(name)[skip:] if words in str(e.get("error", ""))]


@pytest.mark.parametrize("mode", list(FAULTS))
def test_cloud_fault_keeps_current_release_then_recovers(
    mode: str, device: Device, images: Images
) -> None:
    event, words = FAULTS[mode]
    device.agent.write_config(apiTimeout=2000)  # the "timeout" fault holds requests for 70 s
    ids = deploy_first(device, images)
    skip = len(device.agent.events_named(event))
    device.cloud.set_fault(device.uuid, mode, retry_after=2 if mode == "503_retry_after" else None)
    device.cloud.set_target(device.uuid, release(images, "r2", 2, images.main_v3))
    failed = wait_until(
        lambda: len(errors_since(device, event, skip, words)) >= 2 and device.agent.running,
        30,
        message=lambda: f"two {event} with {words!r}; log:\n{device.agent.log_tail(20)}",
    )
    assert failed
    # still running r1, untouched, and nothing of r2 started
    assert device.agent.running, device.agent.log_tail(30)
    assert device.update_status(APP) == ("r1", "done")
    assert device.history(APP, "r2") == []
    services = device.by_service()
    assert {n: cs[0].id for n, cs in services.items()} == ids
    assert all(len(cs) == 1 and cs[0].status == "running" for cs in services.values())
    if mode == "503_retry_after":
        delays = [e["retry_in_s"] for e in errors_since(device, event, skip, words)]
        assert all(d >= 2 for d in delays), f"Retry-After: 2 not honoured: {delays}"
    device.cloud.clear_fault(device.uuid)
    wait_status(device, "r2", "done", timeout=60)
    assert_converged(device, "r2")
    assert volume_file(device) == "keep"
