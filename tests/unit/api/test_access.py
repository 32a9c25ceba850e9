"""The access table: every route has exactly one rule, and the middleware applies it. As on
balena, an app key may reboot, update and change the host config; with `strictApiKeys` it
gets 403 there. It gets 403 on this agent's own device routes and 401 on another app's route
in both modes."""

import pytest
from aiohttp import web

from agent.api.access import ROUTES, Access, check_table, registered
from tests.unit.api.fakes import build_app, fake_agent, serve


def built_app(tmp_path):
    ctx, _ = fake_agent(tmp_path)
    return build_app(ctx, tmp_path)


def test_every_route_of_the_app_has_exactly_one_entry(tmp_path):
    app = built_app(tmp_path)
    assert registered(app) == set(ROUTES)
    assert len(ROUTES) >= 37


def test_a_route_without_an_entry_is_refused_at_start(tmp_path):
    app = built_app(tmp_path)

    async def handler(_request):
        return web.Response()

    app.router.add_post("/v2/new-thing", handler)
    with pytest.raises(RuntimeError, match="no entry for"):
        check_table(app)


def test_device_routes_are_those_the_readme_names():
    device = {route for route, access in ROUTES.items() if access is Access.DEVICE}
    assert device == {
        ("POST", "/v1/update"),
        ("POST", "/v1/reboot"),
        ("POST", "/v1/shutdown"),
        ("GET", "/v1/device/host-config"),
        ("PATCH", "/v1/device/host-config"),
        ("POST", "/v2/local/target-state"),
    }
    assert {r for r, a in ROUTES.items() if a is Access.AGENT_DEVICE} == {
        ("GET", "/metrics"),
        ("GET", "/v2/device/status"),
    }
    assert {r for r, a in ROUTES.items() if a is Access.OPEN} == {
        ("GET", "/ping"),
        ("GET", "/v1/healthy"),
    }


def _path(template: str, app_id: int) -> str:
    return template.replace("{appId}", str(app_id))


@pytest.mark.parametrize("strict", [False, True])
async def test_an_app_key_is_held_to_the_table(tmp_path, strict):
    """App 5's key: 403 on the agent's own device routes (and, strict, on balena's device
    routes; else through to the handler), 401 on app 6's routes (path or body), and through
    to the handler (here: the engine is down, 503) on its own app's routes."""

    async def check(client, agent, updates):
        key = {"Authorization": f"Bearer {agent.keys.app_keys[5]}"}
        for (method, template), access in sorted(ROUTES.items()):
            if access is Access.AGENT_DEVICE or (access is Access.DEVICE and strict):
                answer = await client.request(method, template, headers=key)
                assert answer.status == 403, template
                assert (await answer.json())["status"] == "failed"
            elif access is Access.DEVICE:
                answer = await client.request(method, template, headers=key, json={})
                assert answer.status not in (401, 403), template
            elif access is Access.APP_PATH:
                other = await client.request(method, _path(template, 6), headers=key, json={})
                assert other.status == 401, template
                assert "another app" in (await other.json())["message"]
                own = await client.request(method, _path(template, 5), headers=key, json={})
                assert own.status not in (401, 403), template
            elif access is Access.APP_BODY:
                other = await client.request(method, template, headers=key, json={"appId": 6})
                assert other.status == 401, template
                own = await client.request(method, template, headers=key, json={"appId": 5})
                assert own.status not in (401, 403), template
                bad = await client.request(method, template, headers=key, json={"appId": "²"})
                assert bad.status == 400, template
        assert updates == ([] if strict else [False])  # the one /v1/update that went through
        # the device key passes every rule
        device = {"Authorization": f"Bearer {agent.keys.global_key}"}
        assert (await client.get("/v2/device/status", headers=device)).status not in (401, 403)

    await serve(tmp_path, check, strict=strict)
