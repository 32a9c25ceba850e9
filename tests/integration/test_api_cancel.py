"""POST /v1/update {"cancel": true} while a release downloads through a slow registry: the
apply in flight is abandoned and its pull stopped, the running release keeps running untouched,
and, as the reference does after a cancel, the target is applied anew (the download starts over
and the update still completes)."""

from __future__ import annotations

from testbed.targets import device_target
from tests.helpers import wait_bytes_down, wait_until
from tests.integration.api_helpers import APP, APP_ID, deploy, running, two_services, wait_done

MIB = 1024 * 1024


def _app_status(agent) -> dict:
    return next(a for a in agent.api("GET", "/v2/agent/status").body["apps"] if a["appUuid"] == APP)


def test_cancel_stops_the_pull_and_keeps_the_running_release(device, images, slow_registry):
    deploy(device, images)
    agent = device.agent
    before = running(device)
    slow_registry.set_rate(1 * MIB)  # 24 MiB: ~24 s of download
    start = slow_registry.bytes_down
    big = two_services(images, "r2", 2, main=(images.main_v2, 21))
    device.cloud.set_target(device.uuid, device_target({APP: big}))
    agent.wait_for_event("pull_started", 30, image=images.main_v2)
    wait_until(lambda: _app_status(agent)["updateStatus"] == "downloading", 30)
    wait_bytes_down(slow_registry, start, 2 * MIB)  # well into the download

    # the app's own key may cancel, as on balena
    answer = agent.api("POST", "/v1/update", {"cancel": True}, key=agent.api_key(APP_ID))
    assert answer.status == 204
    agent.wait_for_event("apply_cancelled", 10, in_flight=True)
    failed = agent.wait_for_event("pull_failed", 15, image=images.main_v2)
    assert "cancelled" in failed["error"]
    agent.wait_for_event("apply_pass_cancelled", 10)
    # the cancelled pull is not a failed attempt: the release is not given up
    assert not agent.events_named("release_aborted")
    # the running release was not touched; the new one is downloaded from the start again
    assert running(device) == before
    assert len(agent.events_named("pull_started")) >= 2
    status = _app_status(agent)
    assert status["updateStatus"] == "downloading", status
    assert device.update_status(APP)[0] == "r2"

    slow_registry.set_rate(None)
    wait_done(device, APP, timeout=120)
    assert running(device)["aux"] == before["aux"]
    assert running(device)["main"] != before["main"]
