"""Takeover on the real engine: a device where balena's supervisor created the containers, the
named volume and the network (its names, its labels, its environment) is taken over by the
agent. Services equal to the target keep running — same container, never restarted — the
volume keeps its data, the uuid-named network is joined, not duplicated; a service that really
differs is the only one recreated."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import docker

from testbed.targets import service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, APP_ID, demo_target, wait_status

OS_VERSION = "balenaOS 6.1.2"
NETWORK = f"{APP}_default"  # the reference names networks {appUuid}_{name}
VOLUME = f"{APP_ID}_data"  # and volumes {appId}_{name}


def host_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="da-host-", dir="/tmp"))
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(f'ID="balena-os"\nPRETTY_NAME="{OS_VERSION}"\n')
    return root


def the_target(images: Images, release_uuid: str, release_id: int, aux_env: str) -> dict[str, Any]:
    services = {
        "main": service(
            images.main_v1,
            service_id=1,
            image_id=11,
            labels={"com.example.role": "web"},
            volumes=["data:/data"],
            ports=["18080:80"],
        ),
        "aux": service(images.aux_v1, service_id=2, image_id=12, environment={"MODE": aux_env}),
    }
    return demo_target(release_uuid, release_id, services)


def balena_env(dev: Device, name: str) -> dict[str, str]:
    """The variables balena's supervisor gives a service (an older one: no APP_UUID, no
    DEVICE_ARCH; its own SUPERVISOR_VERSION)."""
    values = {
        "APP_ID": str(APP_ID),
        "APP_NAME": "demo",
        "SERVICE_NAME": name,
        "DEVICE_UUID": dev.uuid,
        "DEVICE_TYPE": str(dev.agent.config["deviceType"]),
        "HOST_OS_VERSION": OS_VERSION,
        "SUPERVISOR_VERSION": "14.11.2",
        "APP_LOCK_PATH": "/tmp/balena/updates.lock",
        "DEVICE_NAME_AT_INIT": "old-name",
    }
    env = {f"{ns}_{k}": v for ns in ("BALENA", "RESIN") for k, v in values.items()}
    return {
        **env,
        "BALENA": "1",
        "RESIN": "1",
        "RESIN_SERVICE_KILL_ME_PATH": "/tmp/balena/handover-complete",
        "BALENA_SERVICE_HANDOVER_COMPLETE_PATH": "/tmp/balena/handover-complete",
        "USER": "root",
    }


def create_as_balena(
    dev: Device,
    name: str,
    image: str,
    service_id: int,
    image_id: int,
    *,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    binds: list[str] | None = None,
    ports: dict[str, int] | None = None,
) -> str:
    """A container created and started the way balena's supervisor does it."""
    api = dev.docker.api
    lock = dev.agent.lock_dir / str(APP_ID) / name
    lock.mkdir(parents=True, exist_ok=True)
    host_config = api.create_host_config(
        binds=[*(binds or []), f"{lock}:/tmp/resin", f"{lock}:/tmp/balena"],
        port_bindings=ports,
        restart_policy={"Name": "always"},
        network_mode=NETWORK,
    )
    created = api.create_container(
        image,
        name=f"{name}_{image_id}_1_r1",  # {service}_{imageId}_{releaseId}_{commit}
        environment={**balena_env(dev, name), **(env or {})},
        labels={
            **(labels or {}),
            "io.balena.supervised": "true",
            "io.balena.app-id": str(APP_ID),
            "io.balena.app-uuid": APP,
            "io.balena.service-id": str(service_id),
            "io.balena.service-name": name,
        },
        ports=[tuple(p.split("/")) for p in ports or {}],  # ExposedPorts "80/tcp"
        stop_timeout=10,
        host_config=host_config,
        networking_config=api.create_networking_config(
            {NETWORK: api.create_endpoint_config(aliases=[name])}
        ),
    )
    api.start(created["Id"])
    return str(created["Id"])


def started_at(client: docker.DockerClient, cid: str) -> tuple[str, bool]:
    state = client.api.inspect_container(cid)["State"]
    return state["StartedAt"], state["Running"]


def test_containers_volume_and_network_of_balenas_supervisor_are_adopted(
    device: Device, images: Images
) -> None:
    dev = device
    client = dev.docker
    for ref in (images.main_v1, images.aux_v1):
        client.api.pull(ref)
    network = client.networks.create(
        NETWORK, labels={"io.balena.supervised": "true", "io.balena.app-id": str(APP_ID)}
    )
    client.volumes.create(
        VOLUME, labels={"io.balena.supervised": "true", "io.balena.app-uuid": APP}
    )
    main = create_as_balena(
        dev,
        "main",
        images.main_v1,
        1,
        11,
        labels={"com.example.role": "web"},
        binds=[f"{VOLUME}:/data"],
        ports={"80/tcp": 18080},
    )
    aux = create_as_balena(dev, "aux", images.aux_v1, 2, 12, env={"MODE": "a"})
    code, out = client.containers.get(main).exec_run(["sh", "-c", "echo kept > /data/file"])
    assert code == 0, out
    before = {cid: started_at(client, cid) for cid in (main, aux)}

    dev.agent.write_config(hostRoot=str(host_root()))
    dev.cloud.set_target(dev.uuid, the_target(images, "r2", 2, aux_env="a"))
    dev.agent.start()
    wait_status(dev, "r2", "done", timeout=30)

    # the same containers, never restarted, renamed into the new release
    by_service = dev.by_service()
    assert [c.id for c in by_service["main"]] == [main]
    assert [c.id for c in by_service["aux"]] == [aux]
    assert {cid: started_at(client, cid) for cid in (main, aux)} == before
    assert by_service["main"][0].name == "main_11_2_r2"
    adopted = {e["service"] for e in dev.agent.events_named("takeover_adopted")}
    assert adopted == {"main", "aux"}
    # the network joined as it is (not a second one of ours), the volume and its data kept
    names = {n.name for n in client.networks.list()}
    assert NETWORK in names and f"{APP_ID}_default" not in names
    assert client.networks.get(NETWORK).id == network.id
    code, out = client.containers.get(main).exec_run(["cat", "/data/file"])
    assert (code, out.strip()) == (0, b"kept")

    # a real change to one service: only that one is recreated
    dev.cloud.set_target(dev.uuid, the_target(images, "r3", 3, aux_env="b"))
    wait_status(dev, "r3", "done", timeout=30)
    by_service = dev.by_service()
    assert [c.id for c in by_service["main"]] == [main]
    assert started_at(client, main) == before[main]
    (new_aux,) = by_service["aux"]
    assert new_aux.id != aux and new_aux.status == "running"
    assert "MODE=b" in new_aux.attrs["Config"]["Env"]
    differs = dev.agent.events_named("takeover_differs")
    assert [(e["service"], e["differences"]) for e in differs] == [("aux", ["environment"])]
    wait_until(lambda: client.containers.get(main).status == "running", 5)
