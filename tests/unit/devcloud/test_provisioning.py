"""devcloud: registration with a fleet's provisioning key and the key exchange, as balena's API
answers them."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from devcloud.server import make_app
from devcloud.state import Cloud

UUID = "f" * 32


async def _run(test: Any) -> None:
    cloud = Cloud()
    client = TestClient(TestServer(make_app(cloud), host="127.0.0.1"))
    await client.start_server()
    try:
        created = await client.post(
            "/admin/applications", json={"id": 7, "provisioning_key": "prov"}
        )
        assert created.status == 201
        await test(client, cloud)
    finally:
        await client.close()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


BODY = {"application": 7, "uuid": UUID, "device_type": "generic-amd64", "api_key": "dev-key"}


async def test_register_answers_as_balena_does():
    async def test(client: TestClient, cloud: Cloud) -> None:
        assert (await client.post("/device/register", json=BODY)).status == 401
        other = {**BODY, "application": 8}
        assert (
            await client.post("/device/register", json=other, headers=_bearer("prov"))
        ).status == 403
        resp = await client.post("/device/register", json=BODY, headers=_bearer("prov"))
        assert resp.status == 201
        answer = await resp.json()
        assert answer == {"id": answer["id"], "uuid": UUID, "api_key": "dev-key"}
        again = await client.post("/device/register", json=BODY, headers=_bearer("prov"))
        assert (again.status, await again.text()) == (409, '"uuid" must be unique.')
        same_key = {**BODY, "uuid": "e" * 32}
        dup = await client.post("/device/register", json=same_key, headers=_bearer("prov"))
        assert (dup.status, await dup.text()) == (409, '"key" must be unique.')
        state = await client.get(f"/device/v3/{UUID}/state", headers=_bearer("dev-key"))
        assert state.status == 200
        fleets = await (await client.get("/admin/applications")).json()
        assert fleets[0]["devices"] == [UUID] and fleets[0]["registrations"] == [BODY]

    await _run(test)


async def test_key_exchange_with_the_fleets_provisioning_key():
    async def test(client: TestClient, cloud: Cloud) -> None:
        await client.post("/device/register", json=BODY, headers=_bearer("prov"))
        query = {"$select": "id", "$filter": f"uuid eq '{UUID}'"}
        found = await (await client.get("/v7/device", params=query, headers=_bearer("prov"))).json()
        (row,) = found["d"]
        stranger = await client.get("/v7/device", params=query, headers=_bearer("nope"))
        assert (await stranger.json()) == {"d": []}
        path = f"/api-key/device/{row['id']}/device-key"
        refused = await client.post(path, json={"apiKey": "k2"}, headers=_bearer("dev-key"))
        assert refused.status == 401
        resp = await client.post(path, json={"apiKey": "k2"}, headers=_bearer("prov"))
        assert (resp.status, await resp.json()) == (200, "k2")
        assert cloud.devices[UUID].api_key == "k2"

    await _run(test)


async def test_a_device_registering_into_a_fleet_starts_with_the_fleets_release():
    target = {"name": "d", "config": {}, "apps": {"a" * 32: {"id": 7, "releases": {}}}}

    async def test(client: TestClient, cloud: Cloud) -> None:
        assert (await client.put("/admin/applications/7/target", json=target)).status == 200
        await client.post("/device/register", json=BODY, headers=_bearer("prov"))
        state = await client.get(f"/device/v3/{UUID}/state", headers=_bearer("dev-key"))
        assert (await state.json()) == {UUID: target}

    await _run(test)
