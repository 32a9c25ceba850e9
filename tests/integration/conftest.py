"""Integration fixtures: the devcloud, published test images, and one device per test."""

from __future__ import annotations

import contextlib
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from devcloud.client import DevCloudClient
from testbed import PrivateEngine, Registry, ThrottledProxy, image_ref_via, publish
from testbed.processes import AgentProcess, DevCloudProcess
from tests.helpers import SUPERVISED_LABEL

MIB = 1024 * 1024
SLOW_CALLBACK_MS = 50.0
# every agent these suites start watches its own loop: see no_slow_callbacks below
AgentProcess.loop_monitor_ms = SLOW_CALLBACK_MS


@pytest.fixture(autouse=True)
def no_slow_callbacks() -> Iterator[None]:
    """Fail the test if an agent it started blocked its event loop for more than
    SLOW_CALLBACK_MS (agent/loopmonitor.py logs `slow_callback` with the
    stack of the blocking call), as Home Assistant fails tests on blocking calls in its loop."""
    first = len(AgentProcess.started)
    yield
    found = []
    for agent in dict.fromkeys(AgentProcess.started[first:]):
        found += [(agent, e) for e in agent.slow_callbacks()]
    if found:
        report = "\n\n".join(
            f"{agent.log_path}: blocked {e.get('blocking_ms')} ms in {e.get('callback')}\n"
            f"{e.get('stack')}"
            for agent, e in found
        )
        pytest.fail(f"the agent's event loop was blocked:\n{report}", pytrace=False)


@pytest.fixture(scope="session")
def devcloud() -> Iterator[DevCloudProcess]:
    proc = DevCloudProcess(Path(tempfile.mkdtemp(prefix="da-c-", dir="/tmp"))).start()
    try:
        yield proc
    finally:
        proc.stop()


@dataclass(frozen=True)
class Images:
    """Test image references, as the agent pulls them: through the throttling proxy."""

    main_v1: str
    main_v2: str  # big: 24 MiB, so download progress is observable when throttled
    main_v3: str
    aux_v1: str
    aux_v1_by_tag: str
    main_v2_size: int
    main_big2: str  # another 24 MiB image (for the small-disk tests)


@pytest.fixture(scope="session")
def images(
    docker_client: docker.DockerClient, registry: Registry, slow_registry: ThrottledProxy
) -> Images:
    def pub(repo: str, tag: str, payload_mb: float = 0) -> tuple[str, str, int]:
        published = publish(
            docker_client, registry, repo, tag, marker=f"{repo}:{tag}", payload_mb=payload_mb
        )
        return (
            image_ref_via(published.ref_by_digest, slow_registry.address),
            image_ref_via(published.ref_by_tag, slow_registry.address),
            published.size,
        )

    main_v1, _, _ = pub("app/main", "v1", 1)
    main_v2, _, size = pub("app/main", "v2", 24)
    main_v3, _, _ = pub("app/main", "v3", 1)
    aux_v1, aux_by_tag, _ = pub("app/aux", "v1")
    main_big2, _, _ = pub("app/main", "big2", 24)
    return Images(main_v1, main_v2, main_v3, aux_v1, aux_by_tag, size, main_big2)


@dataclass
class Device:
    uuid: str
    key: str
    agent: AgentProcess
    cloud: DevCloudClient
    docker: docker.DockerClient

    def containers(self) -> list[docker.models.containers.Container]:
        # the SDK lists, then inspects each container: one the agent removes in between
        # raises NotFound, which only means "listed too early": list again
        for _ in range(20):
            with contextlib.suppress(docker.errors.NotFound):
                return self.docker.containers.list(all=True, filters={"label": SUPERVISED_LABEL})
        return self.docker.containers.list(all=True, filters={"label": SUPERVISED_LABEL})

    def by_service(self) -> dict[str, list[docker.models.containers.Container]]:
        out: dict[str, list[docker.models.containers.Container]] = {}
        for c in self.containers():
            out.setdefault(c.labels["io.balena.service-name"], []).append(c)
        return out

    def state(self, since: float | None = None) -> dict:
        return self.cloud.device(self.uuid, since=since)

    def update_status(self, app_uuid: str) -> tuple[str | None, str | None]:
        entry = self.state()["apps_update_status"].get(app_uuid) or {}
        return entry.get("release_uuid"), entry.get("status")

    def history(self, app_uuid: str, release_uuid: str) -> list[str]:
        return [
            h["status"]
            for h in self.state()["update_status_history"]
            if h["app_uuid"] == app_uuid and h["release_uuid"] == release_uuid
        ]


# Modules none of whose tests needs a download: there the images stay on the engine between
# tests (a worker's earlier test pulled them). Everywhere else, and for a test marked
# `@pytest.mark.fresh_images`, every image is removed first, so the test really downloads:
# download progress and throttling, pull faults and retries, disk space, a hold at
# "downloaded", the "Downloading image" log line. A module not listed here downloads afresh.
_KEEPS_IMAGES = tuple(
    f"tests/integration/test_{name}.py"
    for name in (
        "api",
        "api_actions",
        "api_docs_examples",
        "api_hostconfig",
        "api_keys",
        "api_schema",
        "api_streams",
        "api_v1",
        "cli",
        "cloud_logs",
        "compose_keys",
        "contracts",
        "device_tags",
        "feature_labels",
        "host_apps",
        "large_target",
        "local_mode",
        "lock_dir_entries",
        "provisioning",
        "state_files",
        "supervisor_network",
        "takeover",
        "target_validation",
        "update_windows",
    )
)


def downloads_afresh(item: pytest.Item) -> bool:
    return item.get_closest_marker("fresh_images") is not None or not item.nodeid.startswith(
        _KEEPS_IMAGES
    )


@pytest.fixture
def device(
    devcloud: DevCloudProcess,
    engine: PrivateEngine,
    clean_engine: docker.DockerClient,
    request: pytest.FixtureRequest,
) -> Iterator[Device]:
    """A registered device whose agent (not started yet) drives the private engine. Every
    image is removed first where the test needs to download (`downloads_afresh`)."""
    if downloads_afresh(request.node):
        for image in clean_engine.images.list(all=True):
            with contextlib.suppress(docker.errors.APIError):
                clean_engine.images.remove(image.id, force=True)
    uuid = uuidlib.uuid4().hex
    key = uuidlib.uuid4().hex
    cloud = devcloud.client()
    cloud.register(uuid, key, name=request.node.name[:40])
    root = Path(tempfile.mkdtemp(prefix="da-d-", dir="/tmp"))
    agent = AgentProcess(
        root, uuid=uuid, api_key=key, api_endpoint=devcloud.url, docker_host=engine.host
    )
    dev = Device(uuid, key, agent, cloud, clean_engine)
    yield dev
    agent.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- agent log ({agent.log_path}) ---\n{agent.log_tail(80)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
