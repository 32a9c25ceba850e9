"""Emulation fixtures: the agent's image built for aarch64 (run under QEMU) and amd64, and a
device whose agent runs as a container from the arm64 image. The devcloud, the registry and
the test images are the integration suite's."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from testbed import PrivateEngine, rootfs
from testbed.container_agent import ContainerAgent
from testbed.image import AGENT_REPO, BASE_REPO, build
from testbed.processes import DevCloudProcess
from tests.integration import conftest as integration
from tests.integration.conftest import Device

# the integration suite's fixtures, shared with this one
devcloud = integration.devcloud
images = integration.images
pytest_runtest_makereport = integration.pytest_runtest_makereport

ARM = rootfs.arch("aarch64")
AMD = rootfs.arch("amd64")

# With a cold cache the first test's fixtures bootstrap the Debian rootfs (about 5.5 min for
# arm64 under QEMU on an idle 2-core machine, then the image build): far past the suite-wide
# 300 s. A warm cache takes well under that.
COLD_CACHE_TIMEOUT_S = 1800
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(COLD_CACHE_TIMEOUT_S))
            # one xdist worker builds the images (and holds binfmt) for both modules
            item.add_marker(pytest.mark.xdist_group("emulation"))


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    seconds: float
    arch: rootfs.Arch


@pytest.fixture(scope="session")
def binfmt() -> Iterator[None]:
    """qemu-aarch64 registered with binfmt_misc for the whole session (the arm64 build's RUN
    steps and the arm64 agent need it); a mount we made is undone at the end."""
    mounted = rootfs.ensure_binfmt(ARM)
    try:
        yield
    finally:
        rootfs.release_binfmt(mounted)


def _build(engine: PrivateEngine, target: rootfs.Arch) -> BuiltImage:
    client = docker.DockerClient(base_url=engine.host, timeout=1800)
    try:
        tag, seconds = build(client, target, f"{AGENT_REPO}:test-{target.balena}")
    finally:
        client.close()
    print(f"\nemulation: {tag} built in {seconds:.0f}s")
    return BuiltImage(tag, seconds, target)


@pytest.fixture(scope="session")
def arm_image(engine: PrivateEngine, binfmt: None) -> BuiltImage:
    return _build(engine, ARM)


@pytest.fixture(scope="session")
def amd_image(engine: PrivateEngine) -> BuiltImage:
    return _build(engine, AMD)


def _ours(image: docker.models.images.Image) -> bool:
    return any(t.startswith((AGENT_REPO + ":", BASE_REPO + ":")) for t in image.tags)


@pytest.fixture
def arm_device(
    devcloud: DevCloudProcess,
    engine: PrivateEngine,
    clean_engine: docker.DockerClient,
    arm_image: BuiltImage,
    request: pytest.FixtureRequest,
) -> Iterator[Device]:
    """A registered device whose agent (not started yet) is the arm64 container. The apps'
    images are removed first (never the agent's own)."""
    for image in clean_engine.images.list():
        if not _ours(image):
            with contextlib.suppress(docker.errors.APIError):
                clean_engine.images.remove(image.id, force=True)
    uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
    cloud = devcloud.client()
    cloud.register(uuid, key, name=request.node.name[:40])
    agent = ContainerAgent(
        Path(tempfile.mkdtemp(prefix="da-q-", dir="/tmp")),
        image=arm_image.tag,
        engine_host=engine.host,
        platform=ARM.platform,
        uuid=uuid,
        api_key=key,
        api_endpoint=devcloud.url,
        extra={"deviceType": "raspberrypi4-64"},
    )
    dev = Device(uuid, key, agent, cloud, clean_engine)
    yield dev
    started = time.monotonic()
    agent.stop()
    print(f"arm64 agent stopped in {time.monotonic() - started:.1f}s")
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- agent log ({agent.log_path}) ---\n{agent.log_tail(80)}")
    shutil.rmtree(agent.root, ignore_errors=True)
