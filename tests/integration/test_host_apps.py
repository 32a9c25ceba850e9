"""A balena fleet's target holds more than the apps the agent runs: balenaOS's host app, a
fleet app whose image is a hostapp extension, and the supervisor's own app. On the real
engine, only the normal app gets a container; the others are accepted, reported as the
reference supervisor reports them, and the log says why each was skipped."""

from __future__ import annotations

from typing import Any

from testbed.targets import app, device_target, service
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, APP_ID, wait_status

HOST = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
EXT = "0f9e8d7c6b5a49382716f5e4d3c2b1a0"
SUPERVISOR = "52e35121417640b1b28a680504e4039b"  # balena's amd64 supervisor app
# images nobody can pull (a closed local port): pulling one would fail the release
UNPULLABLE = "127.0.0.1:9/balena"


def mixed_target(images: Images) -> dict[str, Any]:
    host = app(
        app_id=201,
        name="balenaOS",
        release_uuid="rh",
        release_id=21,
        services={
            "main": service(
                f"{UNPULLABLE}/amd64-hostos:6.1.2",
                service_id=21,
                image_id=211,
                labels={"io.balena.image.class": "hostapp", "io.balena.image.store": "root"},
            )
        },
    )
    host["is_host"] = True
    ext = app(
        app_id=202,
        name="wifi-firmware",
        release_uuid="re",
        release_id=22,
        services={
            "firmware": service(
                f"{UNPULLABLE}/wifi-firmware:1",
                service_id=22,
                image_id=221,
                labels={"io.balena.image.class": "hostapp-extension"},
            )
        },
    )
    supervisor = app(
        app_id=203,
        name="amd64-supervisor",
        release_uuid="rs",
        release_id=23,
        services={
            "balena-supervisor": service(
                f"{UNPULLABLE}/amd64-supervisor:v17.0.0", service_id=23, image_id=231
            )
        },
    )
    normal = app(
        app_id=APP_ID,
        name="demo",
        release_uuid="r1",
        release_id=1,
        services={"main": service(images.main_v1, service_id=1, image_id=11)},
    )
    return device_target({HOST: host, EXT: ext, SUPERVISOR: supervisor, APP: normal})


def test_host_app_extension_and_supervisor_are_accepted_and_not_run(
    device: Device, images: Images
) -> None:
    dev = device
    dev.cloud.set_target(dev.uuid, mixed_target(images))
    dev.agent.start()
    wait_status(dev, "r1", "done")

    # only the normal app's container, nothing else on the engine; no network for the others
    containers = dev.docker.containers.list(all=True)
    assert [
        (c.labels.get("io.balena.app-uuid"), c.labels.get("io.balena.service-name"))
        for c in containers
    ] == [(APP, "main")]
    networks = {n.name for n in dev.docker.networks.list()}
    assert not {"201_default", "202_default", "203_default"} & networks
    assert not dev.agent.events_named("pull_failed")  # their images were never asked for

    # the cloud's view, as the reference reports them
    apps = dev.state()["current"]["apps"]
    assert HOST not in apps  # the reference reports no service of a host app, so no app
    assert apps[SUPERVISOR]["release_uuid"] == "rs"
    sup = apps[SUPERVISOR]["releases"]["rs"]
    assert sup["update_status"] == "done"
    assert sup["services"] == {
        "balena-supervisor": {
            "image": f"{UNPULLABLE}/amd64-supervisor:v17.0.0",
            "status": "Running",
        }
    }
    assert apps[EXT]["releases"]["re"]["update_status"] == "done"
    assert apps[EXT]["releases"]["re"]["services"] == {}
    assert apps[APP]["releases"]["r1"]["services"]["main"]["status"] == "Running"
    assert dev.update_status(SUPERVISOR) == ("rs", "done")
    assert dev.update_status(EXT) == ("re", "done")
    assert dev.update_status(HOST) == (None, None)

    # the log says why each was skipped, once
    skipped = {e["app_uuid"]: e for e in dev.agent.events_named("app_skipped")}
    assert len(dev.agent.events_named("app_skipped")) == 3
    assert {u: (e["reason"], e["services"], e["whole_app"]) for u, e in skipped.items()} == {
        HOST: ("host_app", ["main"], True),
        EXT: ("hostapp_image", ["firmware"], True),
        SUPERVISOR: ("supervisor", ["balena-supervisor"], True),
    }
    assert "installed by the host OS" in skipped[EXT]["detail"]

    # the local API: the device has converged; the single-app view is the normal app's
    status = dev.agent.api("GET", "/v2/state/status").body
    assert status["appState"] == "applied"
    assert status["release"] == "r1"
    assert [c["serviceName"] for c in status["containers"]] == ["main"]
    state = dev.agent.api("GET", "/v2/applications/state").body
    assert state["balenaOS"]["updateStatus"] == "done" and state["balenaOS"]["services"] == {}
    assert state["amd64-supervisor"]["services"]["balena-supervisor"]["status"] == "Running"
    assert state["demo"]["services"]["main"]["status"] == "Running"
