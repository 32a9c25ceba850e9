"""A freshly flashed device: registration with the fleet's provisioning key, and a preloaded
apps.json run before the first poll. Real agent process, devcloud and engine."""

from __future__ import annotations

import json
import re
import uuid as uuidlib
from pathlib import Path
from typing import Any

from testbed.processes import free_port
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, release

APP_ID = 101


def _flashed(device: Device, provisioning_key: str) -> None:
    """The device's config.json as a balenaOS image ships it: the fleet's provisioning key
    and id, no uuid, no device key, not registered."""
    for key in ("uuid", "deviceApiKey"):
        device.agent.config.pop(key)
    device.agent.config.update(
        apiKey=provisioning_key, applicationId=APP_ID, bootstrapRetryDelay=1000
    )


def _config_json(device: Device) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(device.agent.config_path.read_text())
    return result


def _preload(device: Device, target: dict[str, Any]) -> Path:
    """The target's apps written where balena-preload leaves them (apps.json)."""
    apps_json = device.agent.root / "apps.json"
    device.agent.root.mkdir(parents=True, exist_ok=True)
    apps_json.write_text(json.dumps({"apps": target["apps"], "config": {}}))
    return apps_json


def _wait_main_running(device: Device) -> None:
    wait_until(
        lambda: [c.status for c in device.by_service().get("main", [])] == ["running"],
        60,
        message=lambda: device.agent.log_tail(30),
    )


def test_a_device_with_only_the_provisioning_key_registers_then_runs_its_release(
    device: Device, images: Images
) -> None:
    key = uuidlib.uuid4().hex
    device.cloud.create_application(APP_ID, key)
    _flashed(device, key)
    device.agent.start()
    registered = device.agent.wait_for_event("device_registered", 30)
    config = _config_json(device)
    uuid = config["uuid"]
    assert re.fullmatch(r"[0-9a-f]{32}", uuid) and registered["uuid"] == uuid
    assert "apiKey" not in config
    assert config["registered_at"] > 0 and config["deviceId"] == registered["device_id"]
    assert config["listenPort"] == device.agent.config["listenPort"]  # other keys kept
    (fleet,) = [a for a in device.cloud.applications() if a["id"] == APP_ID]
    assert fleet["devices"] == [uuid]
    assert fleet["registrations"][0]["api_key"] == config["deviceApiKey"]

    device.cloud.set_target(uuid, release(images, "r1", 1, images.main_v1, with_aux=False))

    def status() -> Any:
        return device.cloud.device(uuid)["apps_update_status"].get(APP, {}).get("status")

    wait_until(lambda: status() == "done", 90, message=lambda: device.agent.log_tail(30))
    (main,) = device.by_service()["main"]
    assert main.status == "running"


def test_a_refused_provisioning_key_is_logged_and_retried_until_the_fleet_takes_it(
    device: Device,
) -> None:
    device.cloud.create_application(APP_ID, "the-fleets-key")
    _flashed(device, "a-revoked-key")
    device.agent.start()
    device.agent.wait_api()  # the local API is up while registration is retried
    wait_until(
        lambda: len(device.agent.events_named("registration_failed")) >= 2,
        30,
        message=lambda: device.agent.log_tail(30),
    )
    failed = device.agent.events_named("registration_failed")[0]
    assert failed["status"] == 401 and "refused the provisioning key" in failed["reason"]
    assert _config_json(device)["apiKey"] == "a-revoked-key"
    assert not device.agent.events_named("poll_failed")  # no poll before registration
    device.cloud.create_application(APP_ID, "a-revoked-key")  # the key is made valid
    device.agent.wait_for_event("device_registered", 30)
    device.agent.wait_for_event("target_fetched", 30)


def test_a_preloaded_release_runs_before_any_poll_without_pulling(
    device: Device, images: Images
) -> None:
    preloaded = device.docker.images.pull(images.main_v1)  # as balena-preload leaves the engine
    target = release(images, "r1", 1, images.main_v1, with_aux=False)
    apps_json = _preload(device, target)
    # the cloud is out of reach: the release can only come from the preload
    device.agent.config.update(
        apiEndpoint=f"http://127.0.0.1:{free_port()}", appsJsonPath=str(apps_json)
    )
    device.agent.start()
    _wait_main_running(device)
    events = [e["event"] for e in device.agent.events()]
    assert "preload_loaded" in events and "pull_started" not in events
    assert "target_fetched" not in events
    assert json.loads(apps_json.read_text()) == {}  # set aside, as the reference does
    assert (device.agent.root / "apps.json.preloaded").exists()
    # the preloaded image is the agent's own now: removed like a pulled one once unused
    managed = device.agent.data_dir / "images.json"
    wait_until(lambda: managed.exists() and preloaded.id in json.loads(managed.read_text()), 10)
    # a restart runs the persisted target; the preload is not read again
    device.agent.stop()
    device.agent.start()
    wait_until(
        lambda: (
            len(device.agent.events_named("agent_starting")) == 2
            and len([e for e in device.agent.events_named("target_accepted")]) == 2
        ),
        30,
        message=lambda: device.agent.log_tail(30),
    )
    assert [e["source"] for e in device.agent.events_named("target_accepted")] == ["persisted"] * 2
    assert [e["event"] for e in device.agent.events()].count("preload_loaded") == 1


def test_a_preloaded_flashed_device_runs_offline_then_registers_and_keeps_its_containers(
    device: Device, images: Images
) -> None:
    """balena's flow for a preloaded image: the release runs before the device is known to the
    cloud; once registered, the fleet's target (the same release) changes nothing."""
    device.docker.images.pull(images.main_v1)
    target = release(images, "r1", 1, images.main_v1, with_aux=False)
    device.cloud.create_application(APP_ID, "the-fleets-key")
    device.cloud.set_application_target(APP_ID, target)
    apps_json = _preload(device, target)
    _flashed(device, "not-yet-valid")
    device.agent.config.update(appsJsonPath=str(apps_json))
    device.agent.start()
    _wait_main_running(device)
    (before,) = device.by_service()["main"]
    assert not device.agent.events_named("device_registered")
    device.cloud.create_application(APP_ID, "not-yet-valid")  # the key is accepted now
    uuid = device.agent.wait_for_event("device_registered", 30)["uuid"]

    def status() -> Any:
        return device.cloud.device(uuid)["apps_update_status"].get(APP, {}).get("status")

    wait_until(lambda: status() == "done", 60, message=lambda: device.agent.log_tail(30))
    (after,) = device.by_service()["main"]
    assert after.id == before.id  # not recreated
    assert not device.agent.events_named("pull_started")
