"""Target values the engine could not take, end to end: each rejects its own app at parse time
(status `rejected`, the reason naming service and key) while the valid app beside them is
applied, with its port range published port by port and its host bind mounts left out, as the
reference does. Nothing ends the apply loop, before or after a restart with the bad target
persisted."""

from __future__ import annotations

import random
import uuid as uuidlib
from typing import Any

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images

GOOD = uuidlib.uuid4().hex
BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("ports", {"ports": ["1.5"]}),
    ("ports", {"ports": [":"]}),
    ("ports", {"ports": ["8000-8002:8000-8001"]}),
    ("stop_grace_period", {"stop_grace_period": "inf"}),
    ("stop_grace_period", {"stop_grace_period": "1e999"}),
    ("stop_grace_period", {"stop_grace_period": -5}),
    ("healthcheck.interval", {"healthcheck": {"test": "true", "interval": "nan"}}),
]


def _wait_status(dev: Device, app_uuid: str, wanted: tuple[str, str], timeout: float = 90) -> None:
    wait_until(
        lambda: dev.update_status(app_uuid) == wanted,
        timeout,
        interval=0.2,
        message=lambda: (
            f"{app_uuid}: {wanted}; cloud sees {dev.update_status(app_uuid)}; "
            f"agent log:\n{dev.agent.log_tail(30)}"
        ),
    )


def test_bad_values_reject_their_app_alone_and_ranges_and_binds_work(device, images: Images):
    base = random.randrange(20000, 60000, 10)
    good = app(
        app_id=201,
        name="good",
        release_uuid="g1",
        release_id=1,
        services={
            "main": service(
                images.main_v1,
                service_id=1,
                image_id=11,
                ports=[f"127.0.0.1:{base}-{base + 2}:8000-8002", f"127.0.0.1:{base + 5}:53/udp"],
                volumes=["/:/host", "/var/run/docker.sock:/var/run/docker.sock", "data:/data"],
            )
        },
        volumes={"data": {}},
    )
    bad_apps: dict[str, dict[str, Any]] = {}
    for n, (_, composition) in enumerate(BAD_VALUES):
        bad_apps[f"bad{n}"] = app(
            app_id=300 + n,
            name=f"bad{n}",
            release_uuid=f"b{n}",
            release_id=1,
            services={"web": service(images.aux_v1, service_id=1, image_id=1, **composition)},
        )
    bad_apps["badname"] = app(
        app_id=400,
        name="badname",
        release_uuid="bn",
        release_id=1,
        services={"web\n": service(images.aux_v1, service_id=1, image_id=1)},
    )
    bad_apps["badid"] = app(
        app_id=0,
        name="badid",
        release_uuid="bi",
        release_id=1,
        services={"web": service(images.aux_v1, service_id=1, image_id=1)},
    )
    device.cloud.set_target(device.uuid, device_target({GOOD: good, **bad_apps}))
    device.agent.start()

    _wait_status(device, GOOD, ("g1", "done"))
    for uuid, spec in bad_apps.items():
        release_uuid = next(iter(spec["releases"]))
        _wait_status(device, uuid, (release_uuid, "rejected"), timeout=10)
    reasons = {e["app_uuid"]: e["reason"] for e in device.agent.events_named("app_rejected")}
    for n, (key, _) in enumerate(BAD_VALUES):
        assert "service web" in reasons[f"bad{n}"] and key in reasons[f"bad{n}"], reasons
    assert "invalid service name" in reasons["badname"]
    assert "'id' must be a positive integer" in reasons["badid"]

    (main,) = device.by_service()["main"]
    main.reload()
    bindings = main.attrs["HostConfig"]["PortBindings"]
    assert bindings == {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(base)}],
        "8001/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(base + 1)}],
        "8002/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(base + 2)}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": str(base + 5)}],
    }
    sources = {m.get("Source") for m in main.attrs["Mounts"]}
    targets = {m["Destination"] for m in main.attrs["Mounts"]}
    assert "/host" not in targets and "/var/run/docker.sock" not in targets, targets
    assert "/" not in sources and "/var/run/docker.sock" not in sources
    assert {"/data", "/tmp/balena", "/tmp/resin"} <= targets
    ignored = device.agent.wait_for_event("compose_keys_ignored", 5, app="good")
    assert ignored["keys"] == [
        "volumes: /:/host",
        "volumes: /var/run/docker.sock:/var/run/docker.sock",
    ]
    assert not device.agent.events_named("task_crashed")

    # the bad target is persisted: a restart parses it again, rejects the same apps, and
    # leaves the good app's container alone
    rejected_before = len(device.agent.events_named("app_rejected"))
    device.agent.stop()
    device.agent.start()
    wait_until(
        lambda: len(device.agent.events_named("app_rejected")) == 2 * rejected_before,
        30,
        message=lambda: device.agent.log_tail(30),
    )
    device.agent.wait_api()
    answer = device.agent.api("GET", "/v1/healthy", key=None)
    assert answer.status == 200, answer.body
    assert [c.id for c in device.by_service()["main"]] == [main.id]
    assert device.agent.running
    assert not device.agent.events_named("task_crashed")
