"""BALENA_DEVICE_ARCH: balena's architecture slugs."""

import pytest

from agent.device.info import device_arch


@pytest.mark.parametrize(
    ("machine", "slug"),
    [
        ("x86_64", "amd64"),
        ("aarch64", "aarch64"),
        ("armv7l", "armv7hf"),
        ("armv6l", "rpi"),
        ("i686", "i386"),
        ("riscv64", "riscv64"),
    ],
)
def test_machine_to_balena_slug(machine, slug):
    assert device_arch(None, machine) == slug


def test_config_json_device_arch_wins():
    assert device_arch(" armv7hf ", "x86_64") == "armv7hf"
    assert device_arch("", "x86_64") == "amd64"
