"""A 1 MB target that the cloud sends in small pieces with pauses is applied whole.

On loopback a body arrives in one piece unless the server says otherwise; the devcloud's
trickle mode makes it arrive the way it does over TLS or a slow uplink.
"""

from __future__ import annotations

import json

from testbed.targets import service
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, demo_target, wait_status

CHUNK_BYTES = 2048
PAUSE_MS = 1.0
VALUE_BYTES = 20_000
COUNT = 26  # environment values and labels each: 2 × 26 × 20 kB ≈ 1 MB


def _big_target(images: Images) -> dict:
    env = {f"BIG_{i}": chr(ord("a") + i) * VALUE_BYTES for i in range(COUNT)}
    labels = {f"com.example.big-{i}": chr(ord("A") + i) * VALUE_BYTES for i in range(COUNT)}
    services = {
        "main": service(images.main_v1, service_id=1, image_id=11, environment=env, labels=labels),
        "aux": service(images.aux_v1, service_id=2, image_id=2),
    }
    return demo_target("r-big", 1, services)


def test_a_1mb_target_sent_in_small_pieces_is_applied(device: Device, images: Images) -> None:
    target = _big_target(images)
    size = len(json.dumps({device.uuid: target}))
    assert size >= 1_000_000
    trickle = device.cloud.set_trickle(device.uuid, CHUNK_BYTES, PAUSE_MS)
    assert trickle == {"chunk_bytes": CHUNK_BYTES, "pause_ms": PAUSE_MS}
    device.cloud.set_target(device.uuid, target)

    device.agent.start()
    wait_status(device, "r-big", "done", timeout=25)

    services = device.by_service()
    assert sorted(services) == ["aux", "main"]
    assert all(len(cs) == 1 and cs[0].status == "running" for cs in services.values())
    # every value arrived whole: the container carries them all
    (release,) = target["apps"][APP]["releases"].values()
    wanted = release["services"]["main"]
    (main,) = services["main"]
    env = dict(e.split("=", 1) for e in main.attrs["Config"]["Env"])
    assert {k: env.get(k) for k in wanted["environment"]} == wanted["environment"]
    assert {k: main.labels.get(k) for k in wanted["labels"]} == wanted["labels"]
    # the whole document came through: no poll of it failed as torn JSON
    assert "not valid JSON" not in device.agent.log_tail(400)
