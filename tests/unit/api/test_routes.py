"""API handlers in process, against stand-ins of the API's ports (agent/api/ports.py): what a
client of each route sees, and what the route asks of the agent's parts. No agent, no engine."""

from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient

from agent.model import UpdateStatus, parse_target
from agent.status.board import AppView, ServiceView
from tests.unit.api.fakes import UUID, ApiTestServer, FakeEngine, build_app, fake_context
from tests.unit.local.documents import app, cli_body, doc


class ImagesEngine(FakeEngine):
    """An engine that has every image (the CLI built them on the device)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def image_id(self, ref):
        self.asked.append(ref)
        return f"sha256:{len(self.asked)}"


async def serve(tmp_path, check, **ctx_args: Any) -> None:
    ctx = fake_context(tmp_path, **ctx_args)
    app = build_app(ctx, tmp_path)

    async with TestClient(ApiTestServer(app)) as client:
        key = {"Authorization": f"Bearer {ctx.keys.global_key}"}
        await check(SimpleNamespace(client=client, ctx=ctx, key=key))


async def test_healthy_answers_what_the_health_check_says(tmp_path):
    async def healthy(t):
        answer = await t.client.get("/v1/healthy")
        assert (answer.status, await answer.text()) == (200, "OK")

    async def stuck(t):
        answer = await t.client.get("/v1/healthy")
        assert (answer.status, await answer.text()) == (500, "Unhealthy")

    await serve(tmp_path, healthy)
    await serve(tmp_path, stuck, health=(False, "apply loop stuck: no pass for 700s"))


async def test_update_goes_to_the_trigger_and_answers_whether_it_acted(tmp_path):
    async def check(t):
        forced = await t.client.post("/v1/update", json={"force": True}, headers=t.key)
        ignored = await t.client.post("/v1/update", json={}, headers=t.key)
        assert (forced.status, ignored.status) == (204, 202)
        assert t.ctx.updates.requests == [True, False]

    await serve(tmp_path, check)


async def test_a_local_target_is_refused_outside_local_mode(tmp_path):
    async def check(t):
        answer = await t.client.post("/v2/local/target-state", json=cli_body(), headers=t.key)
        assert answer.status == 400
        assert "local mode" in (await answer.json())["message"]
        assert t.ctx.targets.posted == [] and t.ctx.apply.wakes == []

    await serve(tmp_path, check)


async def test_a_local_target_is_pinned_to_the_devices_images_and_applied(tmp_path):
    engine = ImagesEngine()

    async def check(t):
        answer = await t.client.post("/v2/local/target-state", json=cli_body())
        assert answer.status == 200, await answer.text()
        assert sorted(engine.asked) == ["local_image_web:latest", "local_image_worker:latest"]
        (posted,) = t.ctx.targets.posted
        assert posted[UUID]["name"] == "my-device"
        assert t.ctx.apply.wakes == [(False, True)]  # a pass that looks at the engine again
        shown = await (await t.client.get("/v2/local/target-state")).json()
        assert shown["state"]["local"]["apps"] == posted[UUID]["apps"]

    await serve(tmp_path, check, local_mode=True, engine=engine)


async def test_a_refused_local_target_answers_the_reason(tmp_path):
    async def check(t):
        t.ctx.targets.refuse = "app localapp: service web: no image"
        answer = await t.client.post("/v2/local/target-state", json=cli_body())
        assert answer.status == 400
        assert (await answer.json())["message"] == "app localapp: service web: no image"
        assert t.ctx.apply.wakes == []

    await serve(tmp_path, check, local_mode=True, engine=ImagesEngine())


async def test_device_info_and_name_come_from_the_settings_and_the_target(tmp_path):
    async def check(t):
        info = await (await t.client.get("/v2/local/device-info", headers=t.key)).json()
        assert info["info"] == {"arch": "amd64", "deviceType": "generic-amd64"}
        unnamed = await (await t.client.get("/v2/device/name", headers=t.key)).json()
        assert unnamed["deviceName"] == ""
        t.ctx.targets.base = parse_target(doc({"a": app(1)}, name="kitchen"), UUID)
        named = await (await t.client.get("/v2/device/name", headers=t.key)).json()
        assert named["deviceName"] == "kitchen"

    await serve(tmp_path, check)


async def test_rotating_the_device_key_is_reported(tmp_path):
    rotated: list[bool] = []

    async def check(t):
        old = t.ctx.keys.global_key
        answer = await t.client.post("/v1/regenerate-api-key", headers=t.key)
        assert answer.status == 200
        assert await answer.text() == t.ctx.keys.global_key != old
        assert rotated == [True]
        # an app's key renews only itself: nothing new to report
        app_key = {"Authorization": f"Bearer {t.ctx.keys.app_keys[5]}"}
        assert (await t.client.post("/v1/regenerate-api-key", headers=app_key)).status == 200
        assert rotated == [True]

    await serve(tmp_path, check, key_rotated=lambda: rotated.append(True))


async def test_applications_state_shows_the_status_board_in_the_keys_scope(tmp_path):
    def view(app_id: int, uuid: str) -> AppView:
        return AppView(
            app_uuid=uuid,
            app_id=app_id,
            name=f"app{app_id}",
            release_uuid="r2",
            current_release_uuid="r1",
            update_status=UpdateStatus.DOWNLOADING,
            since=0.0,
            services={"main": ServiceView("img/main:2", "Downloading", 40)},
        )

    async def check(t):
        t.ctx.status.apps.update({"u5": view(5, "u5"), "u6": view(6, "u6")})
        everything = await (await t.client.get("/v2/applications/state", headers=t.key)).json()
        assert sorted(everything) == ["app5", "app6"]
        main = everything["app5"]["services"]["main"]
        assert (main["status"], main["downloadProgress"]) == ("Downloading", 40)
        app_key = {"Authorization": f"Bearer {t.ctx.keys.app_keys[5]}"}
        own = await (await t.client.get("/v2/applications/state", headers=app_key)).json()
        assert sorted(own) == ["app5"]

    await serve(tmp_path, check)


async def test_engine_down_is_a_503_with_the_reason(tmp_path):
    async def check(t):
        answer = await t.client.get("/v2/containerId", headers=t.key)
        assert answer.status == 503
        assert "engine not reachable" in (await answer.json())["message"]

    await serve(tmp_path, check)
