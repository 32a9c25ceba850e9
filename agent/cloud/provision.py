"""Provisioning: a freshly flashed device registers itself with the cloud, as the reference
supervisor does (src/lib/api-helper.ts `provision`, balena-register-device `register`).

balenaOS images ship a config.json with the fleet's provisioning key (`apiKey`) and
`applicationId`, often without `uuid`, `deviceApiKey` or `registered_at`:

1. At start-up (`ensure_identity`) a missing `uuid` and `deviceApiKey` are generated (32 hex
   digits, uuid4 without dashes) and written to config.json *before* anything is sent, so a
   registration whose answer was lost is recognised on the next attempt.
2. Before the first poll and report (`Registrar.ensure`), with `apiKey` present:
   - not registered yet (`registered_at` absent): `POST {apiEndpoint}/device/register` with
     `Authorization: Bearer <apiKey>` and `{application, uuid, device_type, api_key,
     supervisor_version, os_version, os_variant, mac_address}`; 201 answers `{id, uuid,
     api_key}`. A 409 (the uuid is registered already, e.g. our earlier answer was lost) goes on
     with the key exchange below;
   - registered (`registered_at` set) but `apiKey` still there, or no `deviceId`: the key
     exchange: the device is looked up with the device key (`GET /v7/device?$filter=uuid eq
     '…'`), else with the provisioning key, which then installs the device key
     (`POST /api-key/device/{id}/device-key {apiKey}`, 200).
   Then `registered_at` (ms since the epoch) and `deviceId` are written to config.json and
   `apiKey` is removed from it (the reference sets it to null, which removes it).
   A failure is logged (`registration_failed` with the reason) and retried with backoff,
   `bootstrapRetryDelay` (ms, default 30 s as in the reference) being the longest wait; the
   local API and a persisted or preloaded target keep working meanwhile.

Without `apiKey` nothing is done: the device is taken as registered (as our test beds and
devices moved over from a running supervisor are).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from agent.cloud.client import parse_retry_after
from agent.cloud.configjson import update_config_json
from agent.config import DeviceConfig
from agent.errors import CloudError, ConfigError
from agent.retry import Backoff

log = structlog.get_logger("agent.provision")

REGISTER_TIMEOUT_S = 30.0  # balena-register-device's request timeout
FIRST_RETRY_S = 2.0


def new_key() -> str:
    """A uuid or device API key as the reference generates them."""
    return uuidlib.uuid4().hex


def ensure_identity(config: DeviceConfig) -> DeviceConfig:
    """Generate a missing `uuid` / `deviceApiKey` and write them to config.json (blocking: at
    start-up, before the agent's tasks run). Raises ConfigError when config.json can't be
    written: registering with an identity that a restart would forget is worse than stopping."""
    updates: dict[str, str] = {}
    if not config.uuid:
        updates["uuid"] = new_key()
    if not config.device_api_key:
        updates["deviceApiKey"] = new_key()
    if not updates:
        return config
    if config.config_path is not None:
        update_config_json(config.config_path, updates)
    log.info("device_identity_generated", keys=sorted(updates), uuid=updates.get("uuid"))
    return replace(
        config,
        uuid=updates.get("uuid", config.uuid),
        device_api_key=updates.get("deviceApiKey", config.device_api_key),
    )


def register_body(config: DeviceConfig, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of `POST /device/register` (balena-register-device's, without the keys
    it leaves undefined)."""
    body: dict[str, Any] = {
        "application": config.application_id,
        "uuid": config.uuid,
        "device_type": config.device_type,
        "api_key": config.device_api_key,
        "supervisor_version": fields.get("supervisor_version"),
        "os_version": fields.get("os_version") or None,
        "os_variant": fields.get("os_variant") or None,
        "mac_address": fields.get("mac_address") or None,
    }
    return {k: v for k, v in body.items() if v is not None}


class Registrar:
    """Registers the device once, before the cloud tasks start; see the module docstring."""

    def __init__(
        self,
        config: DeviceConfig,
        fields: Callable[[], dict[str, Any]],
        on_registered: Callable[[DeviceConfig], None],
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._fields = fields
        self._on_registered = on_registered
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self.attempts = 0
        self.last_error: str | None = None

    @property
    def needed(self) -> bool:
        return self.config.provisioning_api_key is not None

    def then(
        self, factory: Callable[[], Coroutine[Any, Any, None]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """A task factory that registers first (once, shared by every task) and then runs."""

        async def run() -> None:
            await self.ensure()
            await factory()

        return run

    async def ensure(self) -> None:
        """Return once the device is registered, retrying for as long as it takes."""
        if not self.needed:
            return
        async with self._lock:
            backoff = Backoff(
                base_s=min(FIRST_RETRY_S, self.config.bootstrap_retry_delay_ms / 1000.0),
                cap_s=self.config.bootstrap_retry_delay_ms / 1000.0,
            )
            while self.needed:
                self.attempts += 1
                try:
                    await self.provision_once()
                except CloudError as exc:
                    self.last_error = str(exc)
                    delay = backoff.delay(self.attempts, exc.retry_after, self._rng)
                    log.error(
                        "registration_failed",
                        reason=str(exc),
                        status=exc.status,
                        attempt=self.attempts,
                        retry_in_s=round(delay, 1),
                    )
                    await self._sleep(delay)

    async def provision_once(self) -> None:
        config = self.config
        timeout = aiohttp.ClientTimeout(total=min(REGISTER_TIMEOUT_S, config.api_timeout_s))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            http = _Http(session, config.api_endpoint)
            if config.registered_at is None:
                fields = await asyncio.to_thread(self._fields)
                log.info(
                    "device_registering",
                    uuid=config.uuid,
                    application=config.application_id,
                    api=config.api_endpoint,
                    attempt=self.attempts,
                )
                try:
                    answer = await http.call(
                        "POST",
                        "/device/register",
                        config.provisioning_api_key,
                        register_body(config, fields),
                        expect=201,
                    )
                    how = "registered"
                    device_id = _device_id_of(answer)
                except CloudError as exc:
                    if exc.status != 409:
                        raise
                    log.info("device_already_registered", uuid=config.uuid, next="key exchange")
                    device_id, how = await self._exchange(http), "key exchange"
                registered_at = int(time.time() * 1000)
            else:
                device_id, how = await self._exchange(http), "key exchange"
                registered_at = config.registered_at
        await self._registered(device_id, registered_at, how)

    async def _exchange(self, http: _Http) -> int:
        """The reference's exchangeKeyAndGetDevice: the device's id, with the device key
        working."""
        config = self.config
        query = quote(f"uuid eq '{config.uuid}'")
        path = f"/v7/device?$select=id&$filter={query}"
        device_id = await http.lookup(path, config.device_api_key)
        if device_id is not None:
            return device_id
        device_id = await http.lookup(path, config.provisioning_api_key)
        if device_id is None:
            raise CloudError(
                f"uuid {config.uuid} is registered already, and neither the device key nor the "
                "provisioning key can reach it (another fleet's device?): give this device a "
                "new 'uuid' (or remove it) in config.json",
                status=409,
            )
        await http.call(
            "POST",
            f"/api-key/device/{device_id}/device-key",
            config.provisioning_api_key,
            {"apiKey": config.device_api_key},
            expect=200,
        )
        return device_id

    async def _registered(self, device_id: int, registered_at: int, how: str) -> None:
        config = replace(
            self.config,
            device_id=device_id,
            registered_at=registered_at,
            provisioning_api_key=None,
        )
        if config.config_path is not None:
            try:
                await asyncio.to_thread(
                    update_config_json,
                    config.config_path,
                    {"registered_at": registered_at, "deviceId": device_id},
                    ("apiKey",),
                )
            except ConfigError as exc:  # registered all the same: a restart exchanges keys
                log.error("config_write_failed", error=str(exc))
        self.config = config
        self.last_error = None
        log.info("device_registered", uuid=config.uuid, device_id=device_id, how=how)
        self._on_registered(config)


class _Http:
    def __init__(self, session: aiohttp.ClientSession, endpoint: str) -> None:
        self._session = session
        self._endpoint = endpoint

    async def call(
        self, method: str, path: str, key: str | None, body: Any = None, *, expect: int
    ) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        what = f"{method} {path.split('?')[0]}"
        try:
            async with self._session.request(
                method, self._endpoint + path, json=body, headers=headers
            ) as resp:
                raw = await resp.content.read(64 * 1024)
                if resp.status != expect:
                    snippet = raw[:200].decode(errors="replace").strip()
                    raise CloudError(
                        f"{what}: HTTP {resp.status}{_meaning(resp.status)} {snippet}".strip(),
                        status=resp.status,
                        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                    )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CloudError(f"{what}: {str(exc) or type(exc).__name__}") from exc
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode(errors="replace")

    async def lookup(self, path: str, key: str | None) -> int | None:
        """The device id a `GET /v7/device` finds with `key`; None when the key can't see it
        (401, 403, an empty answer). Other failures (network, 5xx) raise CloudError."""
        try:
            answer = await self.call("GET", path, key, expect=200)
        except CloudError as exc:
            if exc.status in (401, 403, 404):
                return None
            raise
        rows = answer.get("d") if isinstance(answer, dict) else None
        if not rows or not isinstance(rows[0], dict):
            return None
        return _device_id_of(rows[0])


def _device_id_of(answer: Any) -> int:
    device_id = answer.get("id") if isinstance(answer, dict) else None
    if isinstance(device_id, bool) or not isinstance(device_id, int):
        raise CloudError(f"the cloud's answer has no device id: {str(answer)[:200]}")
    return device_id


def _meaning(status: int) -> str:
    if status == 401:
        return " (the cloud refused the provisioning key)"
    if status == 403:
        return " (the key may not register devices in this fleet)"
    if status == 404:
        return " (no such fleet, or no registration endpoint at apiEndpoint)"
    return ""
