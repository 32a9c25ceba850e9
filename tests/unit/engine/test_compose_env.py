"""The environment every container gets (the reference's extendEnvVars and device name), and
how feature labels reach the container spec."""

from pathlib import Path

from agent.engine.compose import DeviceContext, container_spec
from agent.engine.features import HOST_PATHS, HostFacts
from tests.unit.engine.targets import one_app

DEVICE = DeviceContext(
    "dev1",
    "raspberrypi4-64",
    Path("/tmp/locks"),
    "0.1.0",
    device_arch="aarch64",
    device_name=lambda: "frosty-dew",
    api_endpoint="https://api.example",
    device_api_key="DEVKEY",
    host=HostFacts(
        existing_paths=frozenset(HOST_PATHS) - {"/lib/firmware"},
        engine_host="unix:///run/engine.sock",
        os_version="balenaOS 6.0.0",
    ),
)


def service(environment=None, labels=None, composition=None):
    main = {
        "environment": environment or {},
        "labels": labels or {},
        "composition": composition or {},
    }
    app = one_app(main, app_name="myapp", device_name="frosty-dew")
    assert app.release is not None, app.rejection
    return app, app.release.services["main"]


def spec(device=DEVICE, **kw):
    app, svc = service(**kw)
    return container_spec(app, svc, device, "r9", 90)


def test_every_variable_the_reference_injects_with_both_prefixes():
    env = spec().create["environment"]
    values = {
        "APP_ID": "5",
        "APP_UUID": "a1",
        "APP_NAME": "myapp",
        "SERVICE_NAME": "main",
        "DEVICE_UUID": "dev1",
        "DEVICE_TYPE": "raspberrypi4-64",
        "DEVICE_ARCH": "aarch64",
        "HOST_OS_VERSION": "balenaOS 6.0.0",
        "DEVICE_NAME_AT_INIT": "frosty-dew",
        "APP_LOCK_PATH": "/tmp/balena/updates.lock",
    }
    for key, value in values.items():
        assert env[f"BALENA_{key}"] == value, key
        assert env[f"RESIN_{key}"] == value, key
    assert env["BALENA"] == env["RESIN"] == "1"
    assert env["BALENA_SERVICE_HANDOVER_COMPLETE_PATH"] == "/tmp/balena/handover-complete"
    assert env["RESIN_SERVICE_KILL_ME_PATH"] == "/tmp/balena/handover-complete"
    assert env["USER"] == "root"


def test_the_services_own_variables_win_over_the_defaults_but_not_the_device_name():
    env = spec(
        environment={"USER": "pi", "BALENA_APP_NAME": "mine", "BALENA_DEVICE_NAME_AT_INIT": "x"}
    ).create["environment"]
    assert env["USER"] == "pi"
    assert env["BALENA_APP_NAME"] == "mine" and env["RESIN_APP_NAME"] == "myapp"
    assert env["BALENA_DEVICE_NAME_AT_INIT"] == "frosty-dew"  # the reference omits the service's


def test_the_device_name_is_read_when_the_container_is_made():
    names = iter(["first", "renamed"])
    device = DeviceContext("dev1", "t", Path("/tmp/l"), "0", device_name=lambda: next(names))
    assert spec(device).create["environment"]["RESIN_DEVICE_NAME_AT_INIT"] == "first"
    assert spec(device).create["environment"]["RESIN_DEVICE_NAME_AT_INIT"] == "renamed"


def test_feature_variables_win_over_the_services_but_docker_host_does_not():
    labels = {"io.balena.features.balena-api": "1", "io.resin.features.resin-socket": "1"}
    env = spec(
        labels=labels, environment={"BALENA_API_KEY": "mine", "DOCKER_HOST": "tcp://x:1"}
    ).create["environment"]
    assert env["BALENA_API_KEY"] == env["RESIN_API_KEY"] == "DEVKEY"
    assert env["BALENA_API_URL"] == "https://api.example"
    assert env["DOCKER_HOST"] == "tcp://x:1"
    env = spec(labels=labels).create["environment"]
    assert env["DOCKER_HOST"] == "unix:///host/run/balena-engine.sock"


def test_feature_mounts_and_device_requests_reach_the_host_config():
    got = spec(
        labels={
            "io.balena.features.dbus": "1",
            "io.resin.features.firmware": "1",  # not on this host
            "io.balena.features.gpu": "1",  # no GPU driver on this host
            "io.balena.features.extra-firmware": "true",
        },
        composition={"volumes": ["/etc:/etc"]},  # a compose bind mount stays refused
    )
    binds = got.host_config["binds"]
    assert "/run/dbus:/host/run/dbus" in binds
    assert "extra-firmware:/extra-firmware" in binds
    assert not any(b.startswith(("/lib/firmware", "/etc")) for b in binds)
    assert "device_requests" not in got.host_config
    assert got.features_left_out == (
        "io.balena.features.firmware: /lib/firmware (not on the host)",
        "io.balena.features.gpu: GPU device request (no nvidia-container-runtime-hook on the host)",
    )
    gpu_host = DeviceContext("dev1", "t", Path("/tmp/l"), "0", host=HostFacts(gpu=True))
    with_gpu = spec(gpu_host, labels={"io.balena.features.gpu": "1"})
    assert with_gpu.host_config["device_requests"][0]["capabilities"] == [["gpu"]]


def test_a_feature_mount_on_a_path_the_service_uses_is_left_out():
    got = spec(labels={"io.balena.features.sysfs": "1"}, composition={"tmpfs": ["/sys"]})
    assert "/sys:/sys" not in got.host_config["binds"]
    assert got.features_left_out == (
        "io.balena.features.sysfs: /sys (already mounted by the service)",
    )


def test_container_labels_are_normalized_and_the_config_hash_is_the_targets():
    app, svc = service(labels={"io.resin.features.dbus": "1", "io.resin.update.strategy": "x"})
    got = container_spec(app, svc, DEVICE, "r9", 90)
    labels = got.create["labels"]
    assert labels["io.balena.features.dbus"] == "1"
    assert labels["io.balena.update.strategy"] == "x"
    assert not any(k.startswith("io.resin.features") for k in labels)
    assert labels["io.balena.device-agent.config-hash"] == svc.config_hash()


def test_no_feature_labels_no_extra_mounts_nor_log():
    got = spec()
    assert got.features_left_out == ()
    assert sorted(got.host_config["binds"]) == [
        "/tmp/locks/5/main:/tmp/balena",
        "/tmp/locks/5/main:/tmp/resin",
    ]


def test_supervisor_api_label_in_its_legacy_spelling():
    app, svc = service(labels={"io.resin.features.supervisor-api": "1"})
    device = DeviceContext("dev1", "t", Path("/tmp/l"), "0", api_port=48484, app_api_keys={5: "K"})
    env = container_spec(app, svc, device, "r9", 90).create["environment"]
    assert env["BALENA_SUPERVISOR_API_KEY"] == env["RESIN_SUPERVISOR_API_KEY"] == "K"
