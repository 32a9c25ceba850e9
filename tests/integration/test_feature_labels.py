"""A balena release's feature labels on the real engine: the engine socket, /sys and /proc, the
device's API key and URL, the board revision, the extra-firmware volume and the reference's
environment reach the running container; labels whose host path is missing leave only that
out, say so in the log, and the service starts anyway."""

from __future__ import annotations

import json
import os
from pathlib import Path

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, APP_ID, wait_status

LABELS = {
    "io.balena.features.balena-socket": "1",
    "io.resin.features.sysfs": "1",  # the legacy spelling
    "io.balena.features.procfs": "true",
    "io.resin.features.resin-api": "1",  # -> io.balena.features.balena-api
    "io.balena.features.host-os.board-rev": "1",
    "io.balena.features.extra-firmware": "1",
    "io.balena.features.firmware": "1",  # not under the test's host root
    "io.balena.features.kernel-modules": "1",  # nor this
}


def fake_host_root(root: Path) -> Path:
    """A host root that has /sys, /proc and a balenaOS os-release, but no /lib/firmware nor
    /lib/modules (the paths are checked here, the mounts name the real host's paths)."""
    (root / "sys").mkdir()
    (root / "proc").mkdir()
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(
        'ID="balena-os"\nPRETTY_NAME="balenaOS 6.1.2"\nBALENA_BOARD_REV=4f2a9c1\n'
    )
    return root


def test_feature_labels_and_environment_in_the_running_container(
    device: Device, images: Images, tmp_path: Path
) -> None:
    dev = device
    dev.agent.write_config(hostRoot=str(fake_host_root(tmp_path)), deviceArch="armv7hf")
    target = device_target(
        {
            APP: app(
                app_id=APP_ID,
                name="demo",
                release_uuid="f1",
                release_id=1,
                services={
                    "main": service(
                        images.main_v1,
                        service_id=1,
                        image_id=11,
                        labels=LABELS,
                        environment={"MY_VAR": "x"},
                    )
                },
            )
        },
        name="frosty-dew",
    )
    dev.cloud.set_target(dev.uuid, target)
    dev.agent.start()
    wait_status(dev, "f1", "done")
    (main,) = dev.by_service()["main"]
    main.reload()
    assert main.status == "running"

    mounts = {m["Destination"]: m for m in main.attrs["Mounts"]}
    engine_socket = dev.agent.config["dockerHost"].removeprefix("unix://")
    for target_path in (
        "/host/run/balena-engine.sock",
        "/var/run/docker.sock",
        "/var/run/balena.sock",
    ):
        assert mounts[target_path]["Source"] == engine_socket, mounts
    assert mounts["/sys"]["Source"] == "/sys"
    assert mounts["/proc"]["Source"] == "/proc"
    assert mounts["/extra-firmware"]["Type"] == "volume"
    assert mounts["/extra-firmware"]["Name"] == "extra-firmware"
    assert "/lib/firmware" not in mounts and "/lib/modules" not in mounts

    code, out = main.exec_run(
        ["sh", "-c", "test -S /var/run/balena.sock && test -S /host/run/balena-engine.sock && env"]
    )
    assert code == 0, out
    env = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    expected = {
        "DOCKER_HOST": "unix:///host/run/balena-engine.sock",
        "BALENA_API_KEY": dev.key,
        "RESIN_API_KEY": dev.key,
        "BALENA_API_URL": dev.agent.config["apiEndpoint"],
        "BALENA_HOST_OS_BOARD_REV": "4f2a9c1",
        "RESIN_HOST_OS_BUILD": "4f2a9c1",
        "BALENA_HOST_OS_VERSION": "balenaOS 6.1.2",
        "RESIN_DEVICE_ARCH": "armv7hf",
        "BALENA_DEVICE_NAME_AT_INIT": "frosty-dew",
        "RESIN_APP_ID": str(APP_ID),
        "BALENA_APP_NAME": "demo",
        "RESIN_SERVICE_NAME": "main",
        "BALENA_DEVICE_UUID": dev.uuid,
        "RESIN_SERVICE_KILL_ME_PATH": "/tmp/balena/handover-complete",
        "USER": "root",
        "MY_VAR": "x",
    }
    assert {k: env.get(k) for k in expected} == expected
    # /proc in the container is the host's: this test's process is visible there
    code, _ = main.exec_run(["test", "-f", f"/proc/{os.getpid()}/cmdline"])
    assert code == 0
    assert main.labels["io.balena.features.balena-api"] == "1"  # labels under io.balena.*

    def left_out() -> list[str]:
        for line in dev.agent.log_path.read_text().splitlines():
            if '"feature_left_out"' in line:
                return list(json.loads(line)["left_out"])
        return []

    wait_until(lambda: left_out(), 5, message="no feature_left_out in the agent log")
    assert left_out() == [
        "io.balena.features.firmware: /lib/firmware (not on the host)",
        "io.balena.features.kernel-modules: /lib/modules (not on the host)",
    ]
