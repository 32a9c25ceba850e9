"""Real parts for integration tests: a private dockerd, a registry, a throttling proxy, images.

The names below load their modules on first use, so `python -m testbed.agent_main` (an agent
process with the test hooks) imports none of them (no docker SDK in the agent's memory)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._util import TestbedError, TestbedUnavailable
    from .engine import PrivateEngine
    from .images import PublishedImage, build_image, image_ref_via, publish, push
    from .registry import Registry, ThrottledProxy

_WHERE = {
    "PrivateEngine": "engine",
    "PublishedImage": "images",
    "Registry": "registry",
    "TestbedError": "_util",
    "TestbedUnavailable": "_util",
    "ThrottledProxy": "registry",
    "build_image": "images",
    "image_ref_via": "images",
    "publish": "images",
    "push": "images",
}
__all__ = [
    "PrivateEngine",
    "PublishedImage",
    "Registry",
    "TestbedError",
    "TestbedUnavailable",
    "ThrottledProxy",
    "build_image",
    "image_ref_via",
    "publish",
    "push",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
