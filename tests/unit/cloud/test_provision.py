"""Provisioning against the devcloud's balena-shaped registration API (in process)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from agent.cloud.client import CloudClient
from agent.cloud.provision import Registrar, ensure_identity
from agent.config import DeviceConfig, load_device_config
from agent.errors import ConfigError
from devcloud.provisioning import FLEETS_KEY, Application
from devcloud.server import make_app
from devcloud.state import Cloud

FIELDS = {
    "supervisor_version": "9.9.9",
    "os_version": "balenaOS 6.0.0",
    "os_variant": "prod",
    "mac_address": "02:42:ac:11:00:02",
}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _text(path: Path) -> str:
    return path.read_text()


def _json(path: Path) -> Any:
    return json.loads(_text(path))


async def _run(
    tmp_path: Path,
    config_json: dict[str, Any],
    test: Callable[[Cloud, Any, Path, str], Awaitable[None]],
) -> None:
    cloud = Cloud()
    app = make_app(cloud)
    app[FLEETS_KEY].apps[7] = Application(7, "fleet", "prov-key")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    path = tmp_path / "config.json"
    url = str(server.make_url("")).rstrip("/")
    path.write_text(json.dumps({**config_json, "apiEndpoint": url}))
    try:
        await test(cloud, app[FLEETS_KEY], path, url)
    finally:
        await server.close()


def _registrar(config: DeviceConfig, seen: list[DeviceConfig], **kw: Any) -> Registrar:
    return Registrar(config, lambda: dict(FIELDS), seen.append, **kw)


async def test_a_device_with_only_the_provisioning_key_registers_and_writes_config_back(tmp_path):
    async def test(cloud: Cloud, fleets: Any, path: Path, url: str) -> None:
        config = ensure_identity(load_device_config(path))
        on_disk = _json(path)
        assert HEX32.match(config.uuid) and HEX32.match(config.device_api_key)
        assert (on_disk["uuid"], on_disk["deviceApiKey"]) == (config.uuid, config.device_api_key)
        seen: list[DeviceConfig] = []
        t0 = time.time()
        await _registrar(config, seen).ensure()
        # the request as balena-register-device sends it
        assert fleets.apps[7].registrations == [
            {
                "application": 7,
                "uuid": config.uuid,
                "device_type": "raspberrypi4-64",
                "api_key": config.device_api_key,
                **FIELDS,
            }
        ]
        after = _json(path)
        assert "apiKey" not in after  # the reference removes the provisioning key
        assert after["deviceId"] == seen[0].device_id == 1
        assert t0 * 1000 - 1 <= after["registered_at"] <= time.time() * 1000 + 1
        keep = {k: v for k, v in on_disk.items() if k != "apiKey"}
        assert list(after)[: len(keep)] == list(keep)  # other keys kept, in their order
        assert all(after[k] == v for k, v in keep.items())
        assert "\n" not in _text(path).strip()  # one line, as it was
        # the generated device key works for the device API
        client = CloudClient(url, config.uuid, config.device_api_key)
        try:
            assert (await client.fetch_target(None)).changed
        finally:
            await client.close()
        assert load_device_config(path).provisioning_api_key is None  # nothing left to do

    await _run(
        tmp_path,
        {
            "apiKey": "prov-key",
            "applicationId": 7,
            "deviceType": "raspberrypi4-64",
            "persistentLogging": False,
            "hostname": "kiosk",
        },
        test,
    )


async def test_an_already_registered_uuid_goes_on_with_the_key_exchange(tmp_path):
    """Our registration went through but its answer was lost, and the device key in
    config.json is not the one the cloud has: 409, then the provisioning key installs ours."""

    async def test(cloud: Cloud, fleets: Any, path: Path, url: str) -> None:
        cloud.register("u" * 32, "old-key")
        fleets.apps[7].devices.append("u" * 32)
        config = load_device_config(path)
        seen: list[DeviceConfig] = []
        with capture_logs() as logs:
            await _registrar(config, seen).ensure()
        assert cloud.devices["u" * 32].api_key == "new-key"
        assert [e["how"] for e in logs if e["event"] == "device_registered"] == ["key exchange"]
        assert seen[0].device_id is not None
        assert _json(path)["deviceId"] == seen[0].device_id

    base = {"uuid": "u" * 32, "deviceApiKey": "new-key", "apiKey": "prov-key"}
    await _run(tmp_path, {**base, "applicationId": 7}, test)


async def test_a_refused_provisioning_key_is_logged_with_its_reason_and_retried(tmp_path):
    async def test(cloud: Cloud, fleets: Any, path: Path, url: str) -> None:
        fleets.apps[7].provisioning_key = "the-real-key"
        delays: list[float] = []

        async def sleep(seconds: float) -> None:
            delays.append(seconds)
            if len(delays) == 2:  # the fleet's key is fixed in the cloud
                fleets.apps[7].provisioning_key = "prov-key"

        config = ensure_identity(load_device_config(path))
        with capture_logs() as logs:
            await _registrar(config, [], sleep=sleep).ensure()
        failed = [e for e in logs if e["event"] == "registration_failed"]
        assert len(failed) == 2 and all(e["status"] == 401 for e in failed)
        assert "refused the provisioning key" in failed[0]["reason"]
        assert all(0 < d <= 1.0 for d in delays)  # bootstrapRetryDelay caps the backoff
        assert [e["event"] for e in logs].count("device_registered") == 1
        assert "apiKey" not in _json(path)

    await _run(
        tmp_path, {"apiKey": "prov-key", "applicationId": 7, "bootstrapRetryDelay": 1000}, test
    )


async def test_without_a_provisioning_key_nothing_is_sent(tmp_path):
    config = DeviceConfig(uuid="u", api_endpoint="http://127.0.0.1:1", device_api_key="k")
    assert ensure_identity(config) is config
    registrar = _registrar(config, [])
    await registrar.ensure()
    assert registrar.attempts == 0


def test_config_json_with_a_provisioning_key_needs_no_uuid_or_device_key(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"apiEndpoint": "http://x", "apiKey": "p", "applicationId": "7"}))
    config = load_device_config(path)
    assert (config.uuid, config.device_api_key, config.application_id) == ("", "", 7)
    assert config.provisioning_api_key == "p" and config.config_path == path
    path.write_text(json.dumps({"apiEndpoint": "http://x", "apiKey": "p"}))
    with pytest.raises(ConfigError, match="'applicationId' is required"):
        load_device_config(path)
    path.write_text(json.dumps({"apiEndpoint": "http://x", "uuid": "u"}))
    with pytest.raises(ConfigError, match="'deviceApiKey' is required"):
        load_device_config(path)


async def test_a_registered_device_with_a_leftover_provisioning_key_only_exchanges_keys(tmp_path):
    async def test(cloud: Cloud, fleets: Any, path: Path, url: str) -> None:
        cloud.register("r" * 32, "dev-key")
        fleets.apps[7].devices.append("r" * 32)
        with capture_logs() as logs:
            await _registrar(load_device_config(path), []).ensure()
        assert fleets.apps[7].registrations == []  # no second registration
        assert [e.get("how") for e in logs if e["event"] == "device_registered"] == ["key exchange"]
        after = _json(path)
        assert "apiKey" not in after and after["registered_at"] == 1234

    base = {"uuid": "r" * 32, "deviceApiKey": "dev-key", "registered_at": 1234}
    await _run(tmp_path, {**base, "apiKey": "prov-key", "applicationId": 7}, test)
