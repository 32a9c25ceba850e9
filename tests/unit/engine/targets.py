"""The one-app target the compose tests read: app a1 (id 5) at release r9 (id 90), whose service
`main` (id 3, image id 4, reg/main:1) carries what the test gives it."""

from __future__ import annotations

from typing import Any

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
