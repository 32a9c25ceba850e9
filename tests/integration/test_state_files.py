"""An agent whose every state file is valid JSON of the wrong shape still starts, serves its
API and applies its target; the files are kept aside for a human."""

from __future__ import annotations

import json

from testbed.targets import service
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import demo_target, wait_status

WRONG = {
    "api-keys": ["global"],
    "status": {"apps": {"a": {"app_id": "one", "since": "noon"}}, "last_poll": "never"},
    "images": {"sha256:1": True},
    "target": {"etag": 7, "body": [1, 2]},
    "report-cache": {"acked": [], "metrics_at": None},
    "local-target": "local",
}


def test_agent_starts_with_every_state_file_of_the_wrong_shape(
    device: Device, images: Images
) -> None:
    device.agent.data_dir.mkdir(parents=True)
    for key, value in WRONG.items():
        (device.agent.data_dir / f"{key}.json").write_text(json.dumps(value))
    services = {"aux": service(images.aux_v1, service_id=2, image_id=2)}
    device.cloud.set_target(device.uuid, demo_target("r-shapes", 1, services))

    device.agent.start()
    device.agent.wait_api(timeout=20)
    assert device.agent.api("GET", "/ping", key=None).body == "OK"
    set_aside = {e["key"]: e["error"] for e in device.agent.events_named("store_wrong_shape")}
    assert set(set_aside) == set(WRONG), set_aside
    for key, value in WRONG.items():
        assert json.loads((device.agent.data_dir / f"{key}.corrupt").read_text()) == value
    # a fresh global key was made and works
    assert device.agent.api("GET", "/v1/device").status == 200
    wait_status(device, "r-shapes", "done", timeout=25)
    (aux,) = device.by_service()["aux"]
    assert aux.status == "running"
    assert not device.agent.events_named("task_crashed")
