"""Service contracts on the real engine: an optional service whose requirements the device
doesn't meet is not run (the rest of its app is), a required one rejects its app alone, and a
release rejected so leaves the running one as it was."""

from __future__ import annotations

from typing import Any

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images

A, B = "c0ffee000000000000000000000000aa", "c0ffee000000000000000000000000bb"
MET = {"requires": [{"type": "hw.device-type", "slug": "generic-amd64"}]}  # the test device's
UNMET = {"requires": [{"type": "hw.device-type", "slug": "raspberrypi3"}]}


def with_contract(image: str, sid: int, contract: dict[str, Any], **labels: str) -> dict:
    spec = service(image, service_id=sid, image_id=sid, labels=dict(labels))
    spec["contract"] = {"type": "sw.container", "slug": f"s{sid}", **contract}
    return spec


def app_a(images: Images, release_uuid: str, main_contract: dict[str, Any]) -> dict:
    return app(
        app_id=501,
        name="fleet-a",
        release_uuid=release_uuid,
        release_id=1 if release_uuid == "a1" else 2,
        services={
            "main": with_contract(images.main_v1, 1, main_contract),
            "extra": with_contract(images.aux_v1, 2, UNMET, **{"io.resin.features.optional": "1"}),
        },
    )


def wait_status(dev: Device, app_uuid: str, want: tuple[str, str]) -> None:
    wait_until(
        lambda: dev.update_status(app_uuid) == want,
        60,
        interval=0.2,
        message=lambda: f"{app_uuid}: {dev.update_status(app_uuid)}\n{dev.agent.log_tail(30)}",
    )


def test_contracts_and_optional_services(device: Device, images: Images) -> None:
    dev = device
    b = app(
        app_id=502,
        name="fleet-b",
        release_uuid="b1",
        release_id=1,
        services={"web": with_contract(images.aux_v1, 1, UNMET)},
    )
    dev.cloud.set_target(dev.uuid, device_target({A: app_a(images, "a1", MET), B: b}))
    dev.agent.start()
    wait_status(dev, A, ("a1", "done"))
    wait_status(dev, B, ("b1", "rejected"))
    running = dev.by_service()
    assert sorted(running) == ["main"]  # neither the optional `extra` nor fleet-b's `web`
    (main,) = running["main"]
    assert main.status == "running"
    (not_run,) = dev.agent.events_named("contract_services_not_run")
    assert (not_run["app"], not_run["services"]) == ("fleet-a", ["extra"])
    reasons = {e["app_uuid"]: e["reason"] for e in dev.agent.events_named("app_rejected")}
    assert reasons[B] == "app fleet-b: services with unmet requirements: web"

    # a new release of fleet-a whose main service the device can't run: rejected, the running
    # release stays as it is
    dev.cloud.set_target(dev.uuid, device_target({A: app_a(images, "a2", UNMET), B: b}))
    wait_status(dev, A, ("a2", "rejected"))
    (still,) = dev.by_service()["main"]
    still.reload()
    assert still.id == main.id and still.status == "running"
