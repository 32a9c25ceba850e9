"""API keys of the local supervisor API: one global key (the cloud's, reported as `api_secret`)
and one key per app, injected into that app's containers that ask for the supervisor API.

Keys are 32 hex characters, persisted in the store, so they survive restarts and the containers
created with them keep working. Looking a key up compares it against every known key with
`hmac.compare_digest` and never stops early, so the time taken says nothing about the keys.
A key works from memory at once; it is written to disk by a background task (never on the
event loop), and a write a full disk refused is retried after each poll (`flush`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

import structlog

from agent.errors import StoreError
from agent.store import LatestWriter, Store

log = structlog.get_logger("agent.api.keys")

STORE_KEY = "api-keys"


@dataclass(frozen=True)
class Scope:
    """What a request may reach: the whole device (`app_id` None) or one app."""

    app_id: int | None = None

    @property
    def is_global(self) -> bool:
        return self.app_id is None

    def allows(self, app_id: int) -> bool:
        return self.app_id is None or self.app_id == app_id


GLOBAL = Scope()


def new_key() -> str:
    return secrets.token_hex(16)


class ApiKeys:
    def __init__(self, store: Store) -> None:
        self._writer = LatestWriter(store, STORE_KEY, self._write_failed, self._written)
        self._unsaved = False  # a write of the keys failed: they differ from the persisted ones
        saved = store.get(STORE_KEY, {}) or {}
        self._global: str = str(saved.get("global") or "")
        apps = saved.get("apps") or {}
        self._apps: dict[int, str] = {
            int(app_id): str(key)
            for app_id, key in apps.items()
            if re.fullmatch(r"[0-9]{1,12}", str(app_id)) and key
        }
        if not self._global:
            self._global = new_key()
            self._save()
            log.info("api_key_created", scope="global")

    @property
    def global_key(self) -> str:
        return self._global

    @property
    def app_keys(self) -> dict[int, str]:
        """app id -> key (a live view: keys created later show up here)."""
        return self._apps

    def ensure_apps(self, app_ids: set[int]) -> None:
        """Create (and persist) a key for every app id that has none yet. A failed write (full
        data dir) is logged and retried by `flush` after each poll: the keys work from memory
        meanwhile, and the target that brought the app is still applied."""
        missing = sorted(i for i in app_ids if i > 0 and i not in self._apps)
        for app_id in missing:
            self._apps[app_id] = new_key()
            log.info("api_key_created", scope="app", app_id=app_id)
        if missing or self._unsaved:
            self._save()

    def flush(self) -> None:
        """Retry persisting keys an earlier write failed to (called after each poll)."""
        if self._unsaved:
            self._save()

    async def drain(self) -> None:
        """Wait until the latest keys are on disk (or their write failed): at shutdown."""
        await self._writer.flush()

    def lookup(self, key: str) -> Scope | None:
        """The scope of `key`, or None for an unknown key (constant time per known key)."""
        # a header byte that isn't UTF-8 arrives as a lone surrogate: still just a wrong key
        candidate = key.encode(errors="surrogatepass")
        found: Scope | None = None
        if hmac.compare_digest(candidate, self._global.encode()):
            found = GLOBAL
        for app_id, app_key in self._apps.items():
            if hmac.compare_digest(candidate, app_key.encode()) and found is None:
                found = Scope(app_id)
        return found

    def regenerate(self, scope: Scope) -> str:
        """Replace the key of `scope` with a new one; the old key stops working at once."""
        key = new_key()
        if scope.app_id is None:
            self._global = key
        else:
            self._apps[scope.app_id] = key
        self._save()
        log.info(
            "api_key_regenerated", scope="global" if scope.is_global else "app", app_id=scope.app_id
        )
        return key

    def _save(self) -> None:
        self._writer.write(
            {"global": self._global, "apps": {str(k): v for k, v in sorted(self._apps.items())}}
        )

    def _write_failed(self, exc: StoreError) -> None:
        if not self._unsaved:  # logged once, until a write succeeds again
            log.error("api_keys_persist_failed", error=str(exc))
        self._unsaved = True

    def _written(self) -> None:
        if self._unsaved:
            log.info("api_keys_persisted", after="earlier write failed")
        self._unsaved = False
