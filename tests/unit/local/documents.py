"""Target documents for the intake and API unit tests (a helper module, not a test module)."""

from typing import Any

UUID = "dev1"


def app(app_id: int, release: str = "r1", services: tuple[str, ...] = ("main",)) -> dict[str, Any]:
    """One app of a v3 document: a release of busybox-like services."""
    return {
        "id": app_id,
        "name": f"app{app_id}",
        "releases": {
            release: {
                "id": 1,
                "services": {
                    s: {"id": i, "image_id": i, "image": f"img/{s}:1"}
                    for i, s in enumerate(services, 1)
                },
            }
        },
    }


def doc(apps: dict[str, Any], config: dict[str, str] | None = None, name: str = "d") -> Any:
    """The device's v3 document {uuid: {name, config, apps}}."""
    return {UUID: {"name": name, "config": config or {}, "apps": apps}}


def cli_body() -> dict[str, Any]:
    """What `balena push <ip>` posts to /v2/local/target-state (two services, local images)."""
    service = {"environment": {}, "labels": {}, "restart": "always", "running": True}
    return {
        "local": {
            "name": "my-device",
            "config": {"BALENA_SUPERVISOR_LOCAL_MODE": "1"},
            "apps": {
                "1": {
                    "name": "localapp",
                    "commit": "localrelease",
                    "releaseId": "1",
                    "services": {
                        "1": {
                            **service,
                            "imageId": 1,
                            "serviceName": "web",
                            "serviceId": 1,
                            "image": "local_image_web:latest",
                        },
                        "2": {
                            **service,
                            "imageId": 2,
                            "serviceName": "worker",
                            "serviceId": 2,
                            "image": "local_image_worker:latest",
                        },
                    },
                    "volumes": {},
                    "networks": {},
                }
            },
        }
    }
