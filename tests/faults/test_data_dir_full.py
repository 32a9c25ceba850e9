"""The data dir fills up (a small tmpfs mounted as the agent's data dir, filled with a file):
state writes fail with ENOSPC. The previous state stays readable, the agent keeps running and
applying targets and says clearly what it couldn't write; when space returns the next write
succeeds — including the target it couldn't persist, so a restart without network never falls
back to the release before it."""

from __future__ import annotations

import errno
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.targets import app, service
from tests.faults.conftest import FaultImages
from tests.faults.scenario import deploy_r1, r2
from tests.helpers import wait_until
from tests.integration.conftest import Device
from tests.integration.demo_app import APP, wait_status

EXTRA_APP = "0c0ffee0c0ffee0c0ffee0c0ffee0c0f"
NO_SPACE = "No space left on device"


@pytest.fixture
def small_data_dir(device: Device) -> Iterator[Path]:
    """The device's data dir as a 1 MiB tmpfs (unmounted after the agent is gone)."""
    path = device.agent.data_dir
    path.mkdir(parents=True, exist_ok=True)
    options = "size=1m,mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        device.agent.kill()
        subprocess.run(["umount", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write one file until the filesystem is full; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh:
        chunk = b"\0" * 4096
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def read_state(directory: Path, key: str) -> Any:
    return json.loads((directory / f"{key}.json").read_text())


def target_release(saved: dict[str, Any]) -> list[str]:
    (body,) = saved["body"].values()
    return sorted(body["apps"][APP]["releases"])


def test_full_data_dir_keeps_the_agent_running_then_recovers(
    device: Device, fault_images: FaultImages, small_data_dir: Path
) -> None:
    deploy_r1(device, fault_images)
    assert target_release(read_state(small_data_dir, "target")) == ["r1"]
    filler = fill(small_data_dir)
    # a new release, and a new app (whose API key must be written too)
    target = r2(fault_images)
    target["apps"][EXTRA_APP] = app(
        app_id=202,
        name="extra",
        release_uuid="x1",
        release_id=7,
        services={"solo": service(fault_images.aux_v1, service_id=9, image_id=71)},
    )
    device.cloud.set_target(device.uuid, target)
    failed = device.agent.wait_for_event("target_persist_failed", 30)
    assert NO_SPACE in failed["error"], failed
    # the agent goes on: both apps applied, reported, and it keeps polling
    wait_status(device, "r2", "done")
    wait_until(
        lambda: (device.state()["apps_update_status"].get(EXTRA_APP) or {}).get("status") == "done",
        60,
        message="the new app done",
    )
    assert device.agent.running
    assert not device.agent.events_named("task_crashed"), device.agent.events_named("task_crashed")
    t = time.time()
    wait_until(lambda: any(p["t"] > t for p in device.state()["polls"]), 10, message="polls")
    # the previous state is intact and readable
    assert target_release(read_state(small_data_dir, "target")) == ["r1"]
    assert read_state(small_data_dir, "status")["apps"][APP]["release_uuid"] == "r1"
    assert device.agent.events_named("status_persist_failed")
    # space returns: the next writes succeed, the unsaved target first
    filler.unlink()
    device.agent.wait_for_event("target_persisted", 20)
    assert target_release(read_state(small_data_dir, "target")) == ["r2"]
    wait_until(
        lambda: (
            read_state(small_data_dir, "status")["apps"][APP]["update_status"] == "done"
            and read_state(small_data_dir, "status")["apps"][APP]["release_uuid"] == "r2"
        ),
        20,
        message="status persisted",
    )
    assert "202" in read_state(small_data_dir, "api-keys")["apps"]
    # a restart without network comes back on r2 (not r1) and keeps it running as it is
    ids = {c.name: c.id for c in device.containers()}
    pulls = len(device.agent.events_named("pull_started"))
    device.agent.kill()
    device.agent.write_config(apiEndpoint="http://127.0.0.1:9")  # nothing listens there
    device.agent.start()
    device.agent.wait_for_event("target_accepted", 20, source="persisted")
    device.agent.wait_api()

    def release_shown() -> tuple[str, str] | None:
        status = device.agent.api("GET", "/v2/agent/status").body
        entry = next((a for a in status["apps"] if a["appUuid"] == APP), None)
        return None if entry is None else (entry["release"], entry["updateStatus"])

    wait_until(lambda: release_shown() == ("r2", "done"), 20, message=lambda: f"{release_shown()}")
    time.sleep(3)
    assert {c.name: c.id for c in device.containers()} == ids
    assert len(device.agent.events_named("pull_started")) == pulls, "it went back to r1"
