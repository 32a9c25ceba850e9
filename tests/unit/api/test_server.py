"""The API's middlewares (auth, errors, limits) with a stand-in agent, no engine."""

from tests.unit.api.fakes import serve


async def test_only_ping_and_healthy_are_open(tmp_path):
    async def check(client, agent, _updates):
        assert (await (await client.get("/ping")).text()) == "OK"
        assert (await client.get("/v1/healthy")).status == 200
        denied = await client.get("/v2/version")
        assert denied.status == 401
        assert (await denied.json())["status"] == "failed"
        assert denied.content_type == "application/json"
        key = agent.keys.global_key
        for headers, query in (
            ({"Authorization": f"Bearer {key}"}, ""),
            ({"Authorization": f"ApiKey {key}"}, ""),
            ({}, f"?apikey={key}"),
        ):
            answer = await client.get(f"/v2/version{query}", headers=headers)
            assert answer.status == 200, headers
        assert (
            await client.get("/v2/version", headers={"Authorization": "Bearer nope"})
        ).status == 401

    await serve(tmp_path, check)


async def test_local_mode_is_open(tmp_path):
    async def check(client, _agent, updates):
        assert (await client.get("/v2/version")).status == 200
        assert (await client.post("/v1/update", json={"force": True})).status == 204
        assert updates == [True]

    await serve(tmp_path, check, local_mode=True)


async def test_scopes_and_update_answers(tmp_path):
    async def check(client, agent, updates):
        app_key = {"Authorization": f"Bearer {agent.keys.app_keys[5]}"}
        device_key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        # as on balena, an app's key may ask for an update (strictApiKeys refuses it)
        assert (await client.post("/v1/update", headers=app_key)).status == 202
        assert (await client.post("/v1/update", headers=device_key)).status == 202
        assert (
            await client.post("/v1/update", json={"force": 1}, headers=device_key)
        ).status == 204
        assert updates == [False, False, True]
        other = await client.post("/v1/restart", json={"appId": 6}, headers=app_key)
        assert other.status == 401

    await serve(tmp_path, check)


async def test_strict_api_keys_keep_app_keys_off_device_routes(tmp_path):
    async def check(client, agent, updates):
        app_key = {"Authorization": f"Bearer {agent.keys.app_keys[5]}"}
        for method, path in (
            ("POST", "/v1/update"),
            ("POST", "/v1/reboot"),
            ("PATCH", "/v1/device/host-config"),
        ):
            forbidden = await client.request(method, path, headers=app_key, json={})
            assert forbidden.status == 403, path
            assert "strictApiKeys" in (await forbidden.json())["message"]
        assert (await client.post("/v1/blink", headers=app_key)).status == 200
        assert (await client.post("/v1/restart", json={"appId": 6}, headers=app_key)).status == 401
        assert updates == []

    await serve(tmp_path, check, strict=True)


async def test_errors_are_json_with_honest_codes(tmp_path):
    async def check(client, agent, _updates):
        key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        missing = await client.get("/v2/nope", headers=key)
        assert missing.status == 404 and (await missing.json())["status"] == "failed"
        wrong = await client.delete("/v2/version", headers=key)
        assert wrong.status == 405 and "GET" in wrong.headers["Allow"]
        big = await client.post("/v1/update", data=b"x" * (3 * 1024 * 1024), headers=key)
        assert big.status == 413 and (await big.json())["status"] == "failed"
        engine_down = await client.get("/v2/containerId", headers=key)
        assert engine_down.status == 503
        assert "engine not reachable" in (await engine_down.json())["message"]
        form = await client.post("/v1/update", data={"force": "true"}, headers=key)
        assert form.status == 204

    await serve(tmp_path, check)
