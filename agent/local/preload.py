"""Preloaded apps: the target balena-preload writes into the image (`apps.json`), applied
before the first poll, as the reference does (src/device-state/preload.ts).

The file (config key `appsJsonPath`, default `/mnt/data/apps.json`, the reference's
`$DATA_MOUNTPOINT/apps.json`) holds `{apps: {appUuid: {id, name, class, releases: {…}}},
config: {…}, pinDevice?}` (v3 apps, as the cloud sends them) or the older shape with apps
keyed by numeric id (`{apps: {"123": {name, commit, releaseId, services: {…}}}}`).

It is read once: only while the agent has no target of its own (none persisted from the cloud
or from an earlier preload). The loaded target is persisted as the cloud's target would be
(without an ETag: the first poll fetches the whole target), so a restart without network keeps
running it, and its images (already on the engine in a preloaded image) are not pulled again.
Then, as the reference does, the file is moved to `apps.json.preloaded` and `{}` is written in
its place, and the store remembers the preload (`preloaded`).

Blocking file I/O: call `load_preloaded` from a worker thread.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from agent.errors import EngineError, StoreError, TargetStateError
from agent.local.intake import STORE_KEY as LOCAL_TARGET_KEY
from agent.local.targets import TARGET_KEY
from agent.model import CurrentState, parse_target
from agent.model.target import raw_services
from agent.store import Store

log = structlog.get_logger("agent.preload")

MARK_KEY = "preloaded"
MAX_APPS_JSON_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Preloaded:
    apps: list[str]  # app names
    images: frozenset[str]  # the services' image references


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".preloaded")


def parse_apps_json(raw: Any, device_uuid: str) -> tuple[dict[str, Any] | None, bool]:
    """(the v3 document `{device_uuid: {name, config, apps}}`, pinDevice) for an apps.json;
    None for an empty one (`{}`, or no apps and no config). Raises TargetStateError."""
    if isinstance(raw, list):
        raise TargetStateError(
            "apps.json is a list (the single-container format of resinOS 1.x): not supported; "
            "preload a multicontainer release"
        )
    if not isinstance(raw, dict):
        raise TargetStateError("apps.json must hold a JSON object {apps, config, pinDevice?}")
    apps = raw.get("apps")
    apps = {} if apps is None else apps
    config = raw.get("config")
    config = {} if config is None else config
    pin = raw.get("pinDevice", False)
    if not isinstance(apps, dict):
        raise TargetStateError("apps.json: 'apps' must be an object keyed by app uuid")
    if not isinstance(config, dict) or not all(isinstance(v, str) for v in config.values()):
        raise TargetStateError("apps.json: 'config' must be an object of strings")
    if not isinstance(pin, bool):
        raise TargetStateError("apps.json: 'pinDevice' must be true or false")
    if not apps and not config:
        return None, pin
    if any(str(key).isdigit() for key in apps):  # the older shape: apps keyed by numeric id
        from agent.local.legacy import to_v3  # loaded on first use: idle devices never need it

        document = to_v3({"local": {"name": "", "config": config, "apps": apps}}, device_uuid)
    else:
        document = {device_uuid: {"name": "", "config": config, "apps": apps}}
    parse_target(document, device_uuid)  # refused whole when malformed, as a cloud target
    return document, pin


def load_preloaded(path: Path, device_uuid: str, store: Store) -> Preloaded | None:
    """Persist the preloaded target as the target to run, if there is one to load. Returns
    what was loaded, or None (nothing loaded: why is logged)."""
    if store.get(MARK_KEY) is not None or store.get(TARGET_KEY) is not None:
        log.debug("preload_skipped", reason="the agent has a target already")
        return None
    if store.get(LOCAL_TARGET_KEY) is not None:
        log.debug("preload_skipped", reason="a local-mode target is set")
        return None
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_APPS_JSON_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        log.debug("preload_absent", path=str(path))
        return None
    except OSError as exc:
        log.error("preload_invalid", path=str(path), reason=f"cannot read it: {exc}")
        return None
    try:
        if len(text) > MAX_APPS_JSON_BYTES:
            raise TargetStateError(f"larger than {MAX_APPS_JSON_BYTES} bytes")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise TargetStateError(f"not valid JSON ({exc})") from exc
        document, pin = parse_apps_json(raw, device_uuid)
    except TargetStateError as exc:
        log.error("preload_invalid", path=str(path), reason=str(exc))
        return None
    if document is None:
        log.debug("preload_empty", path=str(path))
        return None
    apps = document[device_uuid]["apps"]
    names = sorted(str(app.get("name", uuid)) for uuid, app in apps.items())
    try:
        store.put(TARGET_KEY, {"etag": None, "body": document})
        store.put(MARK_KEY, {"path": str(path), "at": time.time(), "apps": sorted(apps)})
    except StoreError as exc:
        log.error("preload_persist_failed", path=str(path), error=str(exc))
        return None
    _set_aside(path)
    if pin:
        log.warning(
            "preload_pin_ignored",
            reason="pinDevice: pinning the device to the preloaded release in the cloud is "
            "not supported; the fleet's release applies after the first poll",
        )
    log.info("preload_loaded", path=str(path), apps=names)
    return Preloaded(names, _images(apps))


def _images(apps: dict[str, Any]) -> frozenset[str]:
    images = (svc.get("image") for svc in raw_services(apps))
    return frozenset(i for i in images if isinstance(i, str) and i)


class _Engine(Protocol):
    async def current_state(self, managed_image_ids: frozenset[str]) -> CurrentState: ...


class _Managed(Protocol):
    """The ids of the images the agent owns (agent/reconcile/executor.py ManagedImages)."""

    @property
    def ids(self) -> set[str]: ...
    def add(self, image_id: str) -> None: ...


async def adopt_images(engine: _Engine, managed: _Managed, refs: frozenset[str]) -> None:
    """The preloaded images the engine has become the agent's own, as the reference saves
    them: removed like any image it pulled once no target uses them. (One list call, in a
    worker thread, like every engine read of the apply loop.)"""
    try:
        current = await engine.current_state(frozenset(managed.ids))
    except EngineError as exc:
        log.warning("preload_images_not_adopted", reason=str(exc))
        return
    adopted = []
    for ref in sorted(refs):
        image = current.image_for(ref)
        if image is not None:
            managed.add(image.id)
            adopted.append(ref)
    log.info("preload_images_adopted", images=adopted, missing=sorted(refs - set(adopted)))


def _set_aside(path: Path) -> None:
    """apps.json → apps.json.preloaded, and `{}` in its place (as the reference does)."""
    backup = backup_path(path)
    if backup.exists():
        return
    try:
        os.replace(path, backup)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w") as handle:
            handle.write("{}")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a read-only data partition: the store's mark is enough
        log.warning("preload_file_kept", path=str(path), reason=str(exc))
