"""Dockerfile.template, rendered as balena's builder would, builds for aarch64 (its RUN steps
under QEMU) and amd64, and the result runs the agent."""

from __future__ import annotations

import docker

from testbed.image import TEMPLATE, render
from tests.emulation.conftest import BuiltImage


def test_render_fills_balena_placeholders():
    text = render(TEMPLATE.read_text(), "aarch64", "raspberrypi4-64")
    assert "%%" not in text
    assert "balenalib/aarch64-debian-python" in text
    assert 'io.balena.device-type="raspberrypi4-64"' in text
    assert "HEALTHCHECK" in text and "/v1/healthy" in text
    assert 'io.balena.device-type="generic-amd64"' in render(TEMPLATE.read_text(), "amd64")


def check_image(docker_client: docker.DockerClient, built: BuiltImage, machine: str) -> None:
    image = docker_client.images.get(built.tag)
    assert image.attrs["Architecture"] == built.arch.platform.split("/")[1]
    assert image.labels["io.balena.architecture"] == built.arch.balena
    health = image.attrs["Config"]["Healthcheck"]["Test"]
    assert any("/v1/healthy" in part for part in health)
    out = docker_client.containers.run(
        built.tag,
        entrypoint=["python3", "-c"],
        command=[
            "import platform, subprocess; print(platform.machine()); "
            "print(subprocess.run(['device-agent', '--version'], capture_output=True, "
            "text=True).stdout.strip())"
        ],
        platform=built.arch.platform,
        network_mode="none",
        remove=True,
    )
    assert out.decode().split() == [machine, "device-agent", "0.1.0"]
    size_mb = image.attrs["Size"] / 1e6
    print(f"{built.tag}: {size_mb:.0f} MB, built in {built.seconds:.0f}s")
    assert size_mb < 200


def test_dockerfile_builds_and_runs_for_amd64(amd_image, docker_client):
    check_image(docker_client, amd_image, "x86_64")


def test_dockerfile_builds_and_runs_for_aarch64(arm_image, docker_client):
    check_image(docker_client, arm_image, "aarch64")
