"""Fault-suite fixtures: the integration suite's parts (real dockerd, registry, throttling
proxy from tests/conftest.py; devcloud, images, one device per test from
tests/integration/conftest.py) plus a second small image for the two-service update."""

from __future__ import annotations

from dataclasses import dataclass

import docker
import pytest

from testbed import Registry, ThrottledProxy, image_ref_via, publish
from tests.integration.conftest import (  # noqa: F401  (re-exported fixtures and hook)
    Device,
    Images,
    devcloud,
    device,
    images,
    no_slow_callbacks,
    pytest_runtest_makereport,
)


@dataclass(frozen=True)
class FaultImages:
    """Small images the fault suite's releases use, pulled through the throttling proxy."""

    main_v1: str
    main_v2: str
    aux_v1: str
    aux_v2: str


@pytest.fixture(scope="session")
def fault_images(
    images: Images,  # noqa: F811  (the fixture imported above)
    docker_client: docker.DockerClient,
    registry: Registry,
    slow_registry: ThrottledProxy,
) -> FaultImages:
    published = publish(docker_client, registry, "fault/aux", "v2", marker="fault/aux:v2")
    aux_v2 = image_ref_via(published.ref_by_digest, slow_registry.address)
    return FaultImages(images.main_v1, images.main_v3, images.aux_v1, aux_v2)
