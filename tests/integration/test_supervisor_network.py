"""Issue 11 point 4: services labelled `io.balena.features.supervisor-api` on a bridge network
reach the local API through the supervisor network (balena's `supervisor0`), as on balenaOS.

The agent of each test drives the session's private engine; its supervisor network is that
engine's own (testbed/supnet.py: an interface name and a /28 of 10.114.0.0/16 no route of this
host covers), so the container → gateway traffic stays on this host."""

from __future__ import annotations

import json
from typing import Any

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.api_helpers import API_LABEL, wait_done
from tests.integration.conftest import Device, Images

APP = "5b0e6c1f2a3d4e5f8a9b0c1d2e3f4a5b"
APP_ID = 61
WGET = 'wget -qO- "$BALENA_SUPERVISOR_ADDRESS/v1/device?apikey=$BALENA_SUPERVISOR_API_KEY"'


def _release(images: Images) -> dict[str, Any]:
    return app(
        app_id=APP_ID,
        name="supnet",
        release_uuid="s1",
        release_id=1,
        services={
            "bridged": service(images.main_v1, service_id=1, image_id=11, labels=API_LABEL),
            "plain": service(images.aux_v1, service_id=2, image_id=12),
            "hosted": service(
                images.aux_v1, service_id=3, image_id=13, labels=API_LABEL, network_mode="host"
            ),
        },
    )


def _net_config(device: Device) -> tuple[str, str, str]:
    cfg = device.agent.config
    return (
        cfg["supervisorNetworkInterface"],
        cfg["supervisorNetworkSubnet"],
        cfg["supervisorNetworkGateway"],
    )


def _containers(device: Device) -> dict[str, Any]:
    out = {}
    for name, listed in device.by_service().items():
        listed[0].reload()
        out[name] = listed[0]
    return out


def test_a_bridge_networked_service_reaches_the_api_at_the_supervisor_network_gateway(
    device: Device, images: Images
) -> None:
    name, subnet, gateway = _net_config(device)
    device.cloud.set_target(device.uuid, device_target({APP: _release(images)}))
    device.agent.start()
    device.agent.wait_api()
    wait_done(device, APP)
    port = device.agent.config["listenPort"]

    # the network, as balena's supervisor makes supervisor0: a bridge of that interface name,
    # with the subnet and gateway asked for, and no app's label
    net = device.docker.api.inspect_network(name)
    assert net["Driver"] == "bridge"
    assert net["Options"]["com.docker.network.bridge.name"] == name
    assert (net["IPAM"]["Config"][0]["Subnet"], net["IPAM"]["Config"][0]["Gateway"]) == (
        subnet,
        gateway,
    )
    assert not any(k.endswith(".supervised") for k in net.get("Labels") or {})

    c = _containers(device)
    bridged_env = dict(e.split("=", 1) for e in c["bridged"].attrs["Config"]["Env"])
    hosted_env = dict(e.split("=", 1) for e in c["hosted"].attrs["Config"]["Env"])
    assert bridged_env["BALENA_SUPERVISOR_HOST"] == gateway
    assert bridged_env["BALENA_SUPERVISOR_ADDRESS"] == f"http://{gateway}:{port}"
    assert bridged_env["RESIN_SUPERVISOR_ADDRESS"] == f"http://{gateway}:{port}"
    assert hosted_env["BALENA_SUPERVISOR_ADDRESS"] == f"http://127.0.0.1:{port}"
    # only the labelled bridge-networked service joins it, beside its app network
    assert set(c["bridged"].attrs["NetworkSettings"]["Networks"]) == {f"{APP_ID}_default", name}
    assert name not in c["plain"].attrs["NetworkSettings"]["Networks"]
    assert c["hosted"].attrs["HostConfig"]["NetworkMode"] == "host"

    # from inside the container, with busybox wget and nothing but its environment
    code, out = c["bridged"].exec_run(["/bin/sh", "-c", WGET])
    assert code == 0, out
    body = json.loads(out)
    assert (body["api_port"], body["commit"], body["update_pending"]) == (port, "s1", False)

    # the app-scoped key reaches its own app's endpoints there too
    code, out = c["bridged"].exec_run(
        [
            "/bin/sh",
            "-c",
            f'wget -qO- "$BALENA_SUPERVISOR_ADDRESS/v2/applications/{APP_ID}/state'
            '?apikey=$BALENA_SUPERVISOR_API_KEY"',
        ]
    )
    assert code == 0, out
    state = json.loads(out)
    assert state["commit"] == "s1"
    assert state["local"][str(APP_ID)]["services"]["11"]["status"] == "Running"

    # the app goes: its containers and network go, the supervisor network stays
    device.cloud.set_target(device.uuid, device_target({}))
    wait_until(
        lambda: (
            not device.containers()
            and f"{APP_ID}_default" not in {n["Name"] for n in device.docker.api.networks()}
        ),
        60,
        interval=0.3,
        message=lambda: device.agent.log_tail(30),
    )
    assert device.docker.api.inspect_network(name)["Id"] == net["Id"]
    made = device.agent.events_named("supervisor_network_created")
    assert made or device.agent.events_named("supervisor_network_adopted")  # an earlier test's


def test_an_existing_supervisor_network_is_adopted_and_a_wrong_one_recreated(
    device: Device,
) -> None:
    name, subnet, gateway = _net_config(device)
    api = device.docker.api
    for stale in api.networks(names=[name]):
        api.remove_network(stale["Id"])
    ipam = {"Driver": "default", "Config": [{"Subnet": subnet, "Gateway": gateway}]}

    # made as balena's supervisor makes supervisor0: adopted as it is
    made = api.create_network(
        name,
        driver="bridge",
        options={"com.docker.network.bridge.name": name},
        ipam=ipam,
    )
    device.agent.start()
    device.agent.wait_for_event("supervisor_network_adopted", 20)
    assert api.inspect_network(name)["Id"] == made["Id"]
    assert not device.agent.events_named("supervisor_network_created")
    device.agent.stop()

    # without its bridge name (the engine picked one): said so, and made again right
    api.remove_network(made["Id"])
    wrong = api.create_network(name, driver="bridge", ipam=ipam)
    device.agent.start()
    event = device.agent.wait_for_event("supervisor_network_misconfigured", 20)
    assert any("bridge name" in d for d in event["differences"]), event
    device.agent.wait_for_event("supervisor_network_created", 20, recreated=True)
    now = api.inspect_network(name)
    assert now["Id"] != wrong["Id"]
    assert now["Options"]["com.docker.network.bridge.name"] == name
