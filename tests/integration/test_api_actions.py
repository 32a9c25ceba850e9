"""Local API actions on a running agent: service and app actions, reboot/shutdown and locks."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_until
from tests.integration.api_helpers import APP_ID, deploy, running


def _lock(device, service: str) -> Path:
    path = Path(device.agent.lock_dir) / str(APP_ID) / service / "updates.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("app lock\n")
    return path


def test_service_and_app_actions(device, images):
    deploy(device, images)
    api = device.agent.api
    before = running(device)

    assert (
        api("POST", f"/v2/applications/{APP_ID}/stop-service", {"serviceName": "main"}).body == "OK"
    )
    assert "main" not in running(device) and "aux" in running(device)
    assert (
        api("POST", f"/v2/applications/{APP_ID}/start-service", {"serviceName": "main"}).status
        == 200
    )
    assert running(device)["main"] == before["main"]  # the same container, started again
    restarted = api("POST", f"/v2/applications/{APP_ID}/restart-service", {"imageId": 12})
    assert restarted.status == 200 and running(device) == before

    # restart: new containers, same volume content
    (main,) = device.by_service()["main"]
    assert main.exec_run(["sh", "-c", "echo keep > /data/file"])[0] == 0
    assert api("POST", f"/v2/applications/{APP_ID}/restart", {}).body == "OK"
    after = running(device)
    assert set(after) == {"main", "aux"} and not set(after.values()) & set(before.values())
    (main,) = device.by_service()["main"]
    assert main.exec_run(["cat", "/data/file"])[1].strip() == b"keep"

    # purge: the volume goes, the app comes back (v1 route, v1 answer)
    purged = api("POST", "/v1/purge", {"appId": APP_ID})
    assert purged.status == 200 and purged.body == {"Data": "OK", "Error": ""}
    (main,) = device.by_service()["main"]
    assert main.exec_run(["cat", "/data/file"])[0] != 0
    assert set(running(device)) == {"main", "aux"}
    assert api("POST", "/v1/restart", {"appId": APP_ID}).body == "OK"
    assert set(running(device)) == {"main", "aux"}


def test_locks_block_device_and_app_actions_unless_forced(device, images):
    deploy(device, images)
    api, agent = device.agent.api, device.agent
    lock = _lock(device, "aux")
    for path in ("/v1/reboot", "/v1/shutdown"):
        answer = api("POST", path, {})
        assert answer.status == 423
        assert answer.body["Data"] == "" and "locked" in answer.body["Error"]
    assert api("POST", f"/v2/applications/{APP_ID}/restart", {}).status == 423
    assert (
        api("POST", f"/v2/applications/{APP_ID}/stop-service", {"serviceName": "main"}).status
        == 423
    )
    assert agent.host_actions() == []
    forced = api("POST", "/v1/reboot", {"force": True})
    assert forced.status == 202 and forced.body == {"Data": "OK", "Error": None}
    wait_until(lambda: agent.host_actions() == ["reboot"], 10)
    lock.unlink()
    answer = api("POST", "/v1/shutdown", {})
    assert answer.status == 202
    wait_until(lambda: agent.host_actions() == ["reboot", "shutdown"], 10)
