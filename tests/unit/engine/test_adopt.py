"""Takeover: containers balena's supervisor made (no config hash of ours) are judged by what the
engine says they run. Equal to the target service → adopted (kept, at most renamed into the
release); any real difference → named, and the container replaced."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.engine.adopt import adopt, differences, spec_on_engine
from agent.engine.compose import ContainerSpec, DeviceContext
from agent.model import ContainerState, ContainerStatus, CurrentState, TargetState
from agent.model.current import (
    LABEL_CONFIG_HASH,
    LABEL_IMAGE_ID,
    LABEL_IMAGE_REF,
    LABEL_RELEASE_ID,
    LABEL_RELEASE_UUID,
    EngineConfig,
    container_name,
)
from agent.reconcile.planner import plan
from agent.reconcile.steps import Kill, PlanContext, UpdateMetadata
from tests.unit.reconcile.factories import app, image, network, release, svc, target, volume

DEVICE = DeviceContext("dev1", "raspberrypi4-64", Path("/tmp/locks"), "0.1.0")
UUID = "0123456789abcdef0123456789abcdef"  # an app uuid as balena's cloud makes them
IMAGE_CONFIG: dict[str, Any] = {
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
    "Labels": {"org.opencontainers.image.source": "https://example.test/repo"},
    "Cmd": ["/bin/sh", "-c", "serve"],
    "Entrypoint": None,
    "WorkingDir": "/srv",
    "ExposedPorts": {"9000/tcp": {}},
}
OURS = (LABEL_CONFIG_HASH, LABEL_IMAGE_REF, LABEL_IMAGE_ID, LABEL_RELEASE_ID, LABEL_RELEASE_UUID)

COMPOSITION = {
    "ports": ["8080:80"],
    "volumes": ["data:/data"],
    "restart": "unless-stopped",
    "cap_add": ["NET_ADMIN"],
    "devices": ["/dev/null:/dev/fake"],
    "mem_limit": "64m",
}


def the_target(composition: dict[str, Any] | None = None, release_uuid: str = "r2") -> TargetState:
    services = {
        "main": svc(
            "reg/main:1",
            image_id=11,
            environment={"MODE": "prod"},
            labels={"com.example.role": "web"},
            composition=composition or COMPOSITION,
        )
    }
    body = app(7, release(release_uuid, services, rid=2, volumes={"data": {}}), name="demo")
    return target({UUID: body})


def spec_of(tgt: TargetState, networks: frozenset[str] = frozenset()) -> ContainerSpec:
    a = tgt.apps[UUID]
    assert a.release is not None
    return spec_on_engine(a, a.release.services["main"], DEVICE, networks)


def balena_inspect(spec: ContainerSpec, image_id: str) -> dict[str, Any]:
    """What the engine reports for a container balena's supervisor created for this service:
    the same settings, its own labels only (no config hash of ours), no variable of ours, and
    what the engine fills in from the image."""
    create, host = spec.create, spec.host_config
    env = {k: v for k, v in create["environment"].items() if k != "BALENA_SUPERVISOR_VERSION"}
    labels = {k: v for k, v in create["labels"].items() if k not in OURS}
    bindings = {
        port: [{"HostIp": "", "HostPort": str(p)} for p in targets]
        for port, targets in (host.get("port_bindings") or {}).items()
    }
    devices = []
    for d in host.get("devices") or ():
        on_host, inside = d.split(":")[:2]
        devices.append(
            {"PathOnHost": on_host, "PathInContainer": inside, "CgroupPermissions": "rwm"}
        )
    networks = [spec.primary_network, *spec.extra_networks] if spec.primary_network else []
    return {
        "Id": "c" * 64,
        "Image": image_id,
        "Config": {
            "Image": spec.image,
            "Env": [*IMAGE_CONFIG["Env"], *(f"{k}={v}" for k, v in env.items())],
            "Labels": {**IMAGE_CONFIG["Labels"], **labels},
            "Cmd": IMAGE_CONFIG["Cmd"],
            "Entrypoint": None,
            "WorkingDir": "/srv",
            "Hostname": "cccccccccccc",
            "Tty": False,
            "ExposedPorts": {**IMAGE_CONFIG["ExposedPorts"], "80/tcp": {}},
        },
        "HostConfig": {
            "Binds": list(host["binds"]),
            "PortBindings": bindings,
            "RestartPolicy": {"Name": host["restart_policy"]["Name"], "MaximumRetryCount": 0},
            "NetworkMode": host["network_mode"],
            "Privileged": False,
            "CapAdd": ["CAP_NET_ADMIN"],  # the engine's own spelling
            "CapDrop": None,
            "Devices": devices,
            "Memory": host.get("mem_limit", 0),
            "ShmSize": 67108864,
            "IpcMode": "private",
            "PidsLimit": None,
        },
        "NetworkSettings": {
            "Networks": {n: {"Aliases": ["main", "cccccccccccc"]} for n in networks}
        },
    }


def current_with(tgt: TargetState, inspect: dict[str, Any], *, on_uuid_network: bool = False):
    img = image("reg/main:1")
    net = f"{UUID}_default" if on_uuid_network else "7_default"
    made = ContainerState(
        id="c" * 64,
        name=container_name("main", 11, 1, "r1"),  # the reference's naming, an older release
        app_id=7,
        app_uuid=UUID,
        service_name="main",
        service_id=1,
        image_id=0,
        release_uuid="r1",
        release_id=1,
        image=str(inspect["Config"]["Image"]),
        image_docker_id=str(inspect["Image"]),
        config_hash=None,
        status=ContainerStatus.RUNNING,
        engine_config=EngineConfig(inspect, {"Id": img.id, "Config": IMAGE_CONFIG}),
    )
    return CurrentState(
        containers=(made,),
        images=(img,),
        volumes=(volume("7_data", app_id=0, app_uuid=UUID),),
        networks=(network(net, app_id=7, app_uuid=UUID if on_uuid_network else None),),
    )


def test_a_container_equal_to_its_service_is_adopted_and_only_renamed():
    tgt = the_target()
    img = image("reg/main:1")
    inspect = balena_inspect(spec_of(tgt, frozenset({"7_default"})), img.id)
    current, judged = adopt(current_with(tgt, inspect), tgt, DEVICE)
    assert [(j.service, j.differences) for j in judged] == [("main", ())]
    hash_ = tgt.apps[UUID].release.services["main"].config_hash()  # type: ignore[union-attr]
    assert current.containers[0].config_hash == hash_
    steps = plan(current, tgt, PlanContext()).steps
    assert [type(s) for s in steps] == [UpdateMetadata]  # into release r2 by a rename


def test_on_balenas_uuid_named_network_the_container_is_adopted_and_the_network_kept():
    tgt = the_target()
    img = image("reg/main:1")
    networks = frozenset({f"{UUID}_default"})
    spec = spec_of(tgt, networks)
    assert spec.host_config["network_mode"] == f"{UUID}_default"
    current, judged = adopt(
        current_with(tgt, balena_inspect(spec, img.id), on_uuid_network=True), tgt, DEVICE
    )
    assert judged[0].adopted
    steps = plan(current, tgt, PlanContext()).steps
    assert [type(s) for s in steps] == [UpdateMetadata]  # no network created, none removed
    done = plan(
        replace(current, containers=(replace(current.containers[0], release_uuid="r2"),)),
        tgt,
        PlanContext(),
    )
    assert done.steps == () and done.apps[UUID].status == "done"


def _set(path: tuple[str, ...], value: Any):
    def change(inspect: dict[str, Any]) -> None:
        node = inspect
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _env_changed(inspect: dict[str, Any]) -> None:
    inspect["Config"]["Env"] = [
        e if not e.startswith("MODE=") else "MODE=dev" for e in inspect["Config"]["Env"]
    ]


def _env_extra(inspect: dict[str, Any]) -> None:
    inspect["Config"]["Env"].append("DEBUG=1")


def _label_changed(inspect: dict[str, Any]) -> None:
    inspect["Config"]["Labels"]["com.example.role"] = "worker"


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (_set(("Image",), "sha256:" + "e" * 64), "image"),
        (_env_changed, "environment"),
        (_env_extra, "environment"),
        (_label_changed, "labels"),
        (_set(("Config", "Cmd"), ["serve", "--debug"]), "command"),
        (_set(("Config", "Entrypoint"), ["/init"]), "entrypoint"),
        (_set(("HostConfig", "Binds"), ["/tmp/locks/7/main:/tmp/balena"]), "volumes"),
        (
            _set(("HostConfig", "PortBindings"), {"80/tcp": [{"HostIp": "", "HostPort": "8081"}]}),
            "ports",
        ),
        (_set(("HostConfig", "RestartPolicy"), {"Name": "always"}), "restart"),
        (_set(("HostConfig", "Privileged"), True), "privileged"),
        (_set(("HostConfig", "CapAdd"), None), "cap_add"),
        (_set(("HostConfig", "Devices"), []), "devices"),
        (_set(("HostConfig", "NetworkMode"), "host"), "network_mode"),
        (_set(("HostConfig", "Memory"), 128 * 2**20), "mem_limit"),
        (_set(("NetworkSettings", "Networks"), {"bridge": {}}), "networks"),
        (
            _set(("NetworkSettings", "Networks", "7_default", "Aliases"), ["cccccccccccc"]),
            "aliases",
        ),
    ],
)
def test_each_real_difference_is_named_and_the_container_replaced(change, difference):
    tgt = the_target()
    img = image("reg/main:1")
    inspect = balena_inspect(spec_of(tgt, frozenset({"7_default"})), img.id)
    change(inspect)
    current, judged = adopt(current_with(tgt, inspect), tgt, DEVICE)
    assert judged[0].differences == (difference,)
    assert current.containers[0].config_hash is None
    steps = plan(current, tgt, PlanContext()).steps
    assert [type(s) for s in steps] == [Kill]  # its replacement starts on the next pass


def test_what_the_engine_takes_from_the_image_is_not_a_difference():
    tgt = the_target({**COMPOSITION, "command": ["serve", "--port", "80"]})
    img = image("reg/main:1")
    spec = spec_of(tgt, frozenset({"7_default"}))
    inspect = balena_inspect(spec, img.id)
    inspect["Config"]["Cmd"] = ["serve", "--port", "80"]
    assert differences(spec, img.id, EngineConfig(inspect, {"Config": IMAGE_CONFIG})) == []
    # without the image's variables, labels and exposed ports the container would differ
    assert set(differences(spec, img.id, EngineConfig(inspect, {}))) == {
        "environment",
        "labels",
        "working_dir",
        "expose",
    }


def test_containers_of_ours_or_of_apps_not_in_the_target_are_left_to_the_planner():
    tgt = the_target()
    img = image("reg/main:1")
    current = current_with(tgt, balena_inspect(spec_of(tgt, frozenset({"7_default"})), img.id))
    other = target({})
    assert adopt(current, other, DEVICE) == (current, ())
    ours = replace(current, containers=(replace(current.containers[0], config_hash="x"),))
    assert adopt(ours, tgt, DEVICE) == (ours, ())


def test_a_tty_or_a_variable_an_older_supervisor_did_not_inject_is_no_difference():
    tgt = the_target()
    img = image("reg/main:1")
    spec = spec_of(tgt, frozenset({"7_default"}))
    inspect = balena_inspect(spec, img.id)
    inspect["Config"]["Tty"] = True  # the reference's default
    inspect["Config"]["Env"] = [
        e for e in inspect["Config"]["Env"] if not e.startswith(("BALENA_APP_UUID=", "RESIN_"))
    ]
    _, judged = adopt(current_with(tgt, inspect), tgt, DEVICE)
    assert judged[0].adopted
    # but a TTY asked for and missing, or an injected variable with another value, is
    with_tty = the_target({**COMPOSITION, "tty": True})
    _, judged = adopt(current_with(with_tty, balena_inspect(spec, img.id)), with_tty, DEVICE)
    assert judged[0].differences == ("tty",)
    inspect["Config"]["Env"].append("BALENA_DEVICE_TYPE=raspberrypi3")
    _, judged = adopt(current_with(tgt, inspect), tgt, DEVICE)
    assert judged[0].differences == ("environment",)


def test_an_address_asked_for_on_a_network_is_compared():
    networks = {"default": {"ipam": {"config": [{"subnet": "10.9.0.0/24", "gateway": "10.9.0.1"}]}}}
    composition = {**COMPOSITION, "networks": {"default": {"ipv4_address": "10.9.0.7"}}}
    services = {"main": svc("reg/main:1", image_id=11, composition=composition)}
    body = app(7, release("r2", services, rid=2, volumes={"data": {}}, networks=networks))
    tgt = target({UUID: body})
    img = image("reg/main:1")
    spec = spec_of(tgt, frozenset({"7_default"}))
    inspect = balena_inspect(spec, img.id)
    endpoint = inspect["NetworkSettings"]["Networks"]["7_default"]
    endpoint["IPAMConfig"] = {"IPv4Address": "10.9.0.7"}
    config = EngineConfig(inspect, {"Config": IMAGE_CONFIG})
    assert differences(spec, img.id, config) == []
    endpoint["IPAMConfig"] = {"IPv4Address": "10.9.0.8"}
    assert differences(spec, img.id, config) == ["ipv4_address"]
