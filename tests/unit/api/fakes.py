"""Stand-ins shared by the API unit tests: an agent without an engine, and a test server run
as ApiServer runs the app."""

import asyncio
from pathlib import Path
from types import SimpleNamespace

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.api.context import HostActions
from agent.api.keys import ApiKeys
from agent.api.metrics import AgentMetrics
from agent.api.server import make_app, runner_options
from agent.errors import EngineUnavailable
from agent.store import Store
from testbed.hoststandin import RecordingHost


class FakeEngine:
    async def current_state(self, _ids):
        raise EngineUnavailable("list containers: engine not reachable")


def fake_agent(tmp_path: Path, local_mode: bool = False, strict: bool = False):
    keys = ApiKeys(Store(tmp_path))
    keys.ensure_apps({5})
    updates = []
    agent = SimpleNamespace(
        keys=keys,
        local_mode=local_mode,
        healthy=lambda: (True, "ok"),
        request_update=lambda force, cancel=False: updates.append(force) or force,  # type: ignore[func-returns-value]
        engine=FakeEngine(),
        images=SimpleNamespace(ids=set()),
        config=SimpleNamespace(lock_dir=tmp_path / "locks", uuid="dev1", strict_api_keys=strict),
    )
    return agent, updates


class ApiTestServer(TestServer):
    """aiohttp's TestServer, but run as ApiServer runs the app: its runner options, and no
    handler cancellation on disconnect (aiohttp's default, which TestServer turns on)."""

    async def _make_runner(self, **_kwargs):
        return web.AppRunner(self.app, **runner_options())


def run(tmp_path, check, local_mode=False, strict=False):
    agent, updates = fake_agent(tmp_path, local_mode, strict)
    host = HostActions(RecordingHost(tmp_path / "host.jsonl"))
    app = make_app(agent, host, AgentMetrics(agent))

    async def go():
        async with TestClient(ApiTestServer(app)) as client:
            await check(client, agent, updates)

    asyncio.run(go())
