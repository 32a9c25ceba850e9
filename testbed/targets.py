"""Build v3 target-state documents (the cloud's wire shape) for tests and the demo."""

from __future__ import annotations

from typing import Any


def service(
    image: str,
    *,
    service_id: int,
    image_id: int,
    environment: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    running: bool = True,
    **composition: Any,
) -> dict[str, Any]:
    return {
        "id": service_id,
        "image_id": image_id,
        "image": image,
        "environment": environment or {},
        "labels": labels or {},
        "running": running,
        "composition": composition,
    }


def app(
    *,
    app_id: int,
    name: str,
    release_uuid: str,
    release_id: int,
    services: dict[str, dict[str, Any]],
    volumes: dict[str, Any] | None = None,
    networks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": app_id,
        "name": name,
        "class": "fleet",
        "releases": {
            release_uuid: {
                "id": release_id,
                "services": services,
                "volumes": volumes or {},
                "networks": networks or {},
            }
        },
    }


def device_target(
    apps: dict[str, dict[str, Any]], *, name: str = "device", config: dict[str, str] | None = None
) -> dict[str, Any]:
    """The device's target without the uuid wrapper (what the devcloud admin API takes)."""
    return {"name": name, "config": config or {}, "apps": apps}
