"""A fleet's private images: pulled from an htpasswd-protected docker-registry (the cloud's
registry, config `registryEndpoint`) with the device's credentials (`d_<uuid>`, its API key),
as balena's supervisor pulls them; a key the registry refuses aborts the release, clearly."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from agent.engine.registry import RegistryAuth, download_size
from testbed import PublishedImage, TestbedError
from testbed.registry import Registry, publish_private
from testbed.targets import service
from tests.integration.conftest import Device
from tests.integration.demo_app import APP, demo_target, wait_status

PUBLISHER = "ci-publisher"
REFUSED = "registry refused the device's credentials"


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[Registry]:
    """A docker-registry asking for Basic auth (htpasswd, bcrypt) on every request."""
    root = Path(tempfile.mkdtemp(prefix="da-ra-", dir="/tmp"))
    reg = Registry(root, users={PUBLISHER: secrets.token_hex(8)})
    try:
        reg.start()
    except TestbedError as exc:
        reg.purge()
        pytest.fail(f"testbed: the auth registry is unavailable — {exc}", pytrace=False)
    try:
        yield reg
    finally:
        reg.purge()


@pytest.fixture(scope="module")
def private(
    docker_client: docker.DockerClient, auth_registry: Registry
) -> tuple[PublishedImage, PublishedImage]:
    return (
        publish_private(docker_client, auth_registry, PUBLISHER, "fleet/main", "v1", "private-v1"),
        publish_private(docker_client, auth_registry, PUBLISHER, "fleet/main", "v2", "private-v2"),
    )


def _users(registry: Registry, **more: str) -> dict[str, str]:
    return {PUBLISHER: (registry.users or {})[PUBLISHER], **more}


def _target(release_uuid: str, release_id: int, image: PublishedImage) -> dict:
    main = service(image.ref_by_digest, service_id=1, image_id=release_id * 10 + 1)
    return demo_target(release_uuid, release_id, {"main": main})


async def test_the_registry_itself_wants_credentials(auth_registry, private):
    """The test bed is what it claims: no anonymous reads, and the size lookup the agent does
    before a pull reads the real registry with the pull's credentials (and only with them)."""
    v1 = private[0]
    auth_registry.set_users(_users(auth_registry, d_dev="right-key"))
    host = auth_registry.address
    ref = v1.ref_by_digest
    assert await download_size(ref, RegistryAuth(host, "d_dev", "right-key")) == v1.size
    assert await download_size(ref, RegistryAuth(host, "d_dev", "wrong-key")) is None
    assert await download_size(ref, None) is None


def test_private_images_pull_with_the_device_key_and_a_refused_key_aborts(
    device: Device, auth_registry: Registry, private
):
    v1, v2 = private
    auth_registry.set_users(_users(auth_registry, **{f"d_{device.uuid}": device.key}))
    device.agent.write_config(registryEndpoint=auth_registry.address, maxPullAttempts=2)
    device.cloud.set_target(device.uuid, _target("r1", 1, v1))
    device.agent.start()
    wait_status(device, "r1", "done", timeout=60)
    running = {name: cs[0].id for name, cs in device.by_service().items()}
    assert list(running) == ["main"]
    assert device.by_service()["main"][0].status == "running"

    # the registry no longer takes the device's key: r2's image is refused, r1 keeps running
    auth_registry.set_users(_users(auth_registry, **{f"d_{device.uuid}": "not-the-device-key"}))
    device.cloud.set_target(device.uuid, _target("r2", 2, v2))
    wait_status(device, "r2", "aborted", timeout=60)
    failed = [e for e in device.agent.events_named("pull_failed") if e["image"] == v2.ref_by_digest]
    assert len(failed) == 2, failed
    assert all(REFUSED in e["error"] for e in failed), failed
    aborted = device.agent.wait_for_event("release_aborted", 5)
    assert "2 failed pulls" in aborted["reason"] and REFUSED in aborted["reason"]
    apps = device.agent.api("GET", "/v2/agent/status").body["apps"]
    view = next(a for a in apps if a["appUuid"] == APP)
    assert view["updateStatus"] == "aborted" and REFUSED in view["reason"], view
    assert {name: cs[0].id for name, cs in device.by_service().items()} == running
    assert device.by_service()["main"][0].status == "running"
