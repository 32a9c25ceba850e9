"""A device short on disk: the agent says so before pulling instead of failing halfway, and
delete-then-download makes room by removing the old image first."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import PrivateEngine
from testbed.processes import AgentProcess, DevCloudProcess
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, release, wait_status

TMPFS_MB = 96


@pytest.fixture
def small_device(devcloud: DevCloudProcess) -> Iterator[Device]:
    """A device whose engine keeps its images on a 96 MiB tmpfs."""
    root = Path(tempfile.mkdtemp(prefix="da-s-", dir="/tmp"))
    (root / "data").mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(root / "data")], check=True
    )
    engine = PrivateEngine(root).start()
    client = engine.client()
    uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
    cloud = devcloud.client()
    cloud.register(uuid, key, name="small-disk")
    agent = AgentProcess(
        root / "device", uuid=uuid, api_key=key, api_endpoint=devcloud.url, docker_host=engine.host
    )
    try:
        yield Device(uuid, key, agent, cloud, client)
    finally:
        agent.kill()
        client.close()
        engine.purge()


def big_release(images: Images, rel: str, rid: int, main: str, strategy: str | None = None):
    target = release(images, rel, rid, main)
    if strategy:
        svc = target["apps"][APP]["releases"][rel]["services"]["main"]
        svc["labels"]["io.balena.update.strategy"] = strategy
    return target


def test_not_enough_disk_is_said_before_pulling_and_the_app_keeps_running(small_device, images):
    dev = small_device
    dev.cloud.set_target(dev.uuid, release(images, "r1", 1, images.main_v2))  # 24 MiB
    dev.agent.start()
    wait_status(dev, "r1", "done", timeout=90)
    before = {n: cs[0].id for n, cs in dev.by_service().items()}
    dev.cloud.set_target(dev.uuid, release(images, "r2", 2, images.main_big2))
    refused = dev.agent.wait_for_event("insufficient_disk", 30)
    assert refused["image"] == images.main_big2
    assert refused["free_bytes"] < 2 * refused["download_bytes"] + 32 * 1024 * 1024
    time.sleep(2)  # the point: nothing else happens meanwhile (no pull, no kill, no abort)
    assert dev.update_status(APP) == ("r2", "downloading")
    assert {n: cs[0].id for n, cs in dev.by_service().items()} == before
    assert all(cs[0].status == "running" for cs in dev.by_service().values())
    started = [e["image"] for e in dev.agent.events_named("pull_started")]
    assert images.main_big2 not in started, "a pull that could not fit was started"
    assert not dev.agent.events_named("release_aborted"), "a full disk is not a reason to give up"


def test_delete_then_download_frees_the_room_it_needs(small_device, images):
    dev = small_device
    dev.cloud.set_target(
        dev.uuid, big_release(images, "r1", 1, images.main_v2, "delete-then-download")
    )
    dev.agent.start()
    wait_status(dev, "r1", "done", timeout=90)
    dev.cloud.set_target(
        dev.uuid, big_release(images, "r2", 2, images.main_big2, "delete-then-download")
    )
    wait_status(dev, "r2", "done", timeout=120)
    assert not dev.agent.events_named("insufficient_disk")
    (main,) = dev.by_service()["main"]
    assert main.status == "running"
