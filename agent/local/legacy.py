"""Local-mode target documents → the v3 target state the agent parses.

`POST /v2/local/target-state` accepts three shapes:
- v3, as the cloud sends it: `{deviceUuid: {name, config, apps: {appUuid: {...releases...}}}}`;
- the OLD v2 shape the balena CLI sends (`balena push <device-ip>`): `{local: {name, config,
  apps: {"1": {name, commit, releaseId, services: {"1": {serviceName, image, imageId, serviceId,
  environment, labels, running, ...compose fields...}}, volumes, networks}}}, dependent: {...}}`;
- that same envelope holding v3 apps (what `GET /v2/local/target-state` returns), so a client
  can GET, edit and POST back.

Pure: no I/O. Malformed input raises `TargetStateError` with a message that says what is wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from agent.errors import TargetStateError
from agent.model.target import raw_services

LOCAL_IMAGE_ID_LABEL = "io.balena.device-agent.local-image-id"
# v2 service keys that are not compose fields
_V2_SERVICE_KEYS = frozenset(
    {
        "serviceName",
        "serviceId",
        "imageId",
        "image",
        "environment",
        "labels",
        "running",
        "contract",
        "build",
        "appId",
        "appUuid",
        "releaseId",
        "commit",
        "imageName",
    }
)


def to_v3(body: Any, device_uuid: str, default_name: str = "") -> dict[str, Any]:
    """The v3 document `{device_uuid: {name, config, apps}}` for any accepted shape."""
    if not isinstance(body, dict):
        raise TargetStateError(f"target state must be a JSON object, got {_kind(body)}")
    if device_uuid in body:
        device = body[device_uuid]
        if not isinstance(device, dict):
            raise TargetStateError(f"'{device_uuid}' must be an object {{name, config, apps}}")
        return {device_uuid: device}
    local = body.get("local")
    if not isinstance(local, dict):
        keys = ", ".join(sorted(map(str, body))[:5]) or "none"
        raise TargetStateError(
            f"target state must be {{'{device_uuid}': {{name, config, apps}}}} (v3) or "
            f"{{'local': {{name, config, apps}}}} (v2, as the balena CLI sends it); "
            f"got keys: {keys}"
        )
    config = local.get("config", {})
    if not isinstance(config, dict):
        raise TargetStateError("'local.config' must be an object of strings")
    apps = local.get("apps", {})
    if not isinstance(apps, dict):
        raise TargetStateError("'local.apps' must be an object keyed by app id")
    converted: dict[str, Any] = {}
    for key, app in apps.items():
        if isinstance(app, dict) and "releases" in app:  # already a v3 app, keyed by uuid
            uuid, v3_app = str(key), app
        else:
            uuid, v3_app = _v2_app(str(key), app)
        if uuid in converted:
            raise TargetStateError(f"app {uuid} appears twice in 'local.apps'")
        converted[uuid] = v3_app
    name = local.get("name", default_name)
    return {
        device_uuid: {
            "name": name if isinstance(name, str) else default_name,
            "config": config,
            "apps": converted,
        }
    }


def _v2_app(key: str, app: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(app, dict):
        raise TargetStateError(f"app {key}: must be an object, got {_kind(app)}")
    app_id = _int(app.get("appId", key), f"app {key}: v2 apps are keyed by their numeric app id")
    uuid = str(app.get("appUuid") or app.get("uuid") or app_id)
    name = str(app.get("name") or f"app{app_id}")
    services = app.get("services")
    services = {} if services is None else services
    if not isinstance(services, dict):
        raise TargetStateError(f"app {name}: 'services' must be an object keyed by service id")
    commit = app.get("commit")
    releases: dict[str, Any] = {}
    if commit:
        if not isinstance(commit, str):
            raise TargetStateError(f"app {name}: 'commit' must be a string")
        release_id = _int(app.get("releaseId"), f"app {name}: 'releaseId' must be an integer")
        converted: dict[str, Any] = {}
        for service_key, svc in services.items():
            service_name, v3_service = _v2_service(name, str(service_key), svc)
            if service_name in converted:
                raise TargetStateError(f"app {name}: service {service_name} appears twice")
            converted[service_name] = v3_service
        releases[commit] = {
            "id": release_id,
            "services": converted,
            "volumes": _obj(app.get("volumes"), f"app {name}: 'volumes'"),
            "networks": _obj(app.get("networks"), f"app {name}: 'networks'"),
        }
    elif services:
        raise TargetStateError(f"app {name}: has services but no 'commit' (the release)")
    return uuid, {"id": app_id, "name": name, "class": "fleet", "releases": releases}


def _v2_service(app: str, key: str, svc: Any) -> tuple[str, dict[str, Any]]:
    where = f"app {app}: service {key}"
    if not isinstance(svc, dict):
        raise TargetStateError(f"{where}: must be an object, got {_kind(svc)}")
    name = svc.get("serviceName")
    if not isinstance(name, str) or not name:
        raise TargetStateError(f"{where}: 'serviceName' must be a non-empty string")
    service_id = _int(svc.get("serviceId", key), f"{where}: 'serviceId' must be an integer")
    image_id = _int(svc.get("imageId", service_id), f"{where}: 'imageId' must be an integer")
    service: dict[str, Any] = {
        "id": service_id,
        "image_id": image_id,
        "image": svc.get("image"),
        "environment": svc.get("environment") or {},
        "labels": svc.get("labels") or {},
        "running": svc.get("running", True),
        "composition": {k: v for k, v in svc.items() if k not in _V2_SERVICE_KEYS},
    }
    return name, service


def pin_local_images(document: dict[str, Any], image_ids: Mapping[str, str]) -> dict[str, Any]:
    """Label every service whose image (a tag such as `local_image_main:latest`) is on the
    engine with that image's id, so a rebuilt image under the same tag changes the service's
    config and its container is recreated. Returns a new document; malformed parts are left
    as they are for the parser to report."""
    out = copy.deepcopy(document)
    for svc in _services(out):
        image_id = image_ids.get(svc.get("image"))  # type: ignore[arg-type]
        labels = svc.get("labels", {})
        if image_id and isinstance(labels, dict):
            svc["labels"] = {**labels, LOCAL_IMAGE_ID_LABEL: image_id}
    return out


def service_images(document: dict[str, Any]) -> set[str]:
    """Image references by tag (not by digest) in a v3 document: the ones to pin."""
    images = (svc.get("image") for svc in _services(document))
    return {i for i in images if isinstance(i, str) and i and "@" not in i}


def _services(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for device in document.values():
        yield from raw_services(device.get("apps") if isinstance(device, dict) else None)


def _int(value: Any, message: str) -> int:
    if isinstance(value, bool):
        raise TargetStateError(message)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise TargetStateError(f"{message}, got {value!r}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TargetStateError(f"{where} must be an object")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
