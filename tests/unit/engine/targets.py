"""The one-app target the compose tests read, and `make`, the container spec of its main:
`main` (id 3, image id 4, reg/main:1) carries what the test gives it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.engine.compose import ContainerSpec, DeviceContext, container_spec
from agent.model import AppSpec, parse_target


def one_app(
    main: dict[str, Any],
    *,
    others: dict[str, Any] | None = None,
    networks: dict[str, Any] | None = None,
    volumes: dict[str, Any] | None = None,
    app_name: str = "app",
    device_name: str | None = None,
) -> AppSpec:
    """The app as parsed (accepted or rejected); `others` are more services of the release."""
    services = {"main": {"id": 3, "image_id": 4, "image": "reg/main:1", **main}, **(others or {})}
    release = {"id": 90, "services": services, "volumes": volumes or {}, "networks": networks or {}}
    device: dict[str, Any] = {
        "apps": {"a1": {"id": 5, "name": app_name, "releases": {"r9": release}}}
    }
    if device_name is not None:
        device["name"] = device_name
    return parse_target({"dev1": device}, "dev1").apps["a1"]


DEVICE = DeviceContext("dev1", "raspberrypi4-64", Path("/tmp/locks"), "0.1.0")


def make(
    composition: dict[str, Any],
    networks: dict[str, Any] | None = None,
    volumes: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    device: DeviceContext = DEVICE,
) -> ContainerSpec:
    main = {
        "environment": {"FOO": "bar"},
        "labels": {"my.label": "x"} if labels is None else labels,
        "composition": composition,
    }
    app = one_app(main, networks=networks, volumes=volumes)
    assert app.release is not None, app.rejection
    return container_spec(app, app.release.services["main"], device, "r9", 90)
