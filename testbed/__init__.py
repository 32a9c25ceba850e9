"""Real parts for integration tests: a private dockerd, a registry, a throttling proxy, images."""

from ._util import TestbedError, TestbedUnavailable
from .engine import PrivateEngine
from .images import PublishedImage, build_image, image_ref_via, publish, push
from .registry import Registry, ThrottledProxy

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
