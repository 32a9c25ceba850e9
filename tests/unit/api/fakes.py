"""Stand-ins shared by the API unit tests: the API's ports (agent/api/ports.py) without an
agent or an engine, and a test server run as ApiServer runs the app."""

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.api.context import HostActions
from agent.api.keys import ApiKeys
from agent.api.metrics import AgentMetrics
from agent.api.ports import ApiContext, ApiSettings
from agent.api.server import make_app, runner_options
from agent.errors import EngineUnavailable
from agent.events.bus import Bus
from agent.model import TargetState
from agent.reconcile.window_gate import OPEN
from agent.status.board import AppView
from agent.store import Store
from testbed.hoststandin import RecordingHost

UUID = "dev1"


class FakeEngine:
    """An engine that is down: every call the API makes fails as the real one would."""

    async def current_state(self, _ids):
        raise EngineUnavailable("list containers: engine not reachable")

    async def restart(self, _cid, timeout=None):
        raise EngineUnavailable("restart: engine not reachable")

    async def stop(self, _cid, timeout=None):
        raise EngineUnavailable("stop: engine not reachable")

    async def start(self, _cid):
        raise EngineUnavailable("start: engine not reachable")

    async def remove_volume(self, _name):
        raise EngineUnavailable("remove volume: engine not reachable")

    async def image_id(self, _ref):
        raise EngineUnavailable("image: engine not reachable")

    def log_lines(self, _cid, _since, follow):
        raise EngineUnavailable("logs: engine not reachable")


class FakeStatus:
    def __init__(self) -> None:
        self.apps: dict[str, AppView] = {}
        self.last_poll: float | None = None
        self.last_poll_error: str | None = None
        self.last_report: float | None = None
        self.last_report_error: str | None = None
        self.target_error: str | None = None
        self.config_errors: list[str] = []

    def container_apps(self) -> list[AppView]:
        return sorted(self.apps.values(), key=lambda a: a.app_id)

    def overall_status(self) -> str:
        return "Idle"


class FakeApply:
    def __init__(self) -> None:
        self.converged = asyncio.Event()
        self.window = OPEN
        self.last_plan = None
        self.wakes: list[tuple[bool, bool]] = []  # (force, recheck)

    def wake(self, force: bool = False, *, recheck: bool = False) -> None:
        self.wakes.append((force, recheck))


class FakeTargets:
    """Target intake: `base` is what the test sets; a local post is kept, or refused with
    `refuse`."""

    def __init__(self, local_mode: bool = False) -> None:
        self.base: TargetState | None = None
        self.local_mode = local_mode
        self.posted: list[dict[str, Any]] = []
        self.refuse: str | None = None
        self.emptied: list[tuple[str, bool]] = []

    def empty_app(self, app_uuid: str, empty: bool) -> None:
        self.emptied.append((app_uuid, empty))

    def document(self) -> dict[str, Any] | None:
        return self.posted[-1][UUID] if self.posted else None

    def accept_local(self, document: dict[str, Any]) -> str | None:
        if self.refuse is None:
            self.posted.append(document)
        return self.refuse


class FakeUpdates:
    def __init__(self) -> None:
        self.requests: list[bool] = []  # `force` of each request

    def request(self, force: bool = False, cancel: bool = False) -> bool:
        self.requests.append(force)
        return force  # as with SUPERVISOR_INSTANT_UPDATE_TRIGGER off: only a forced one acts


class FakeTags:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    async def view(self) -> list[dict[str, Any]]:
        return [{"name": k, "value": v} for k, v in sorted(self.tags.items())]

    async def set(self, tags: dict[str, str]) -> None:
        self.tags = dict(tags)


class FakeConnectivity:
    view = None

    async def probe_once(self):
        raise AssertionError("no probe in these tests")


class Counts:
    polls = 0
    reports_sent = 0


def fake_context(
    tmp_path: Path, local_mode: bool = False, strict: bool = False, **parts: Any
) -> ApiContext:
    """An ApiContext of stand-ins; `parts` replaces any of them (e.g. `engine=`)."""
    keys = ApiKeys(Store(tmp_path))
    keys.ensure_apps({5})
    health = parts.pop("health", (True, "ok"))
    fields: dict[str, Any] = {
        "settings": ApiSettings(
            device_uuid=UUID,
            device_type="generic-amd64",
            device_arch="amd64",
            lock_dir=tmp_path / "locks",
            data_dir=tmp_path,
            host_boot_dir=tmp_path / "boot",
            strict_api_keys=strict,
        ),
        "status": FakeStatus(),
        "apply": FakeApply(),
        "targets": FakeTargets(local_mode),
        "updates": FakeUpdates(),
        "engine": FakeEngine(),
        "managed_images": frozenset,
        "tags": FakeTags(),
        "connectivity": FakeConnectivity(),
        "poller": Counts(),
        "reporter": Counts(),
        "keys": keys,
        "host": RecordingHost(tmp_path / "host.jsonl"),
        "healthy": lambda: health,
        "device_fields": lambda: {"api_port": 48484, "os_version": "balenaOS 6.0.0"},
        "key_rotated": lambda: None,
        "override_lock": lambda: False,
        "bus": Bus(),
    }
    fields.update(parts)
    return ApiContext(**fields)


def fake_agent(tmp_path: Path, local_mode: bool = False, strict: bool = False):
    """(context, the `force` of each update request)."""
    ctx = fake_context(tmp_path, local_mode, strict)
    return ctx, ctx.updates.requests  # type: ignore[attr-defined]


def build_app(ctx: ApiContext, tmp_path: Path) -> web.Application:
    host = HostActions(RecordingHost(tmp_path / "host.jsonl"))
    return make_app(ctx, host, AgentMetrics(ctx, Bus()))


class ApiTestServer(TestServer):
    """aiohttp's TestServer, but run as ApiServer runs the app: its runner options, and no
    handler cancellation on disconnect (aiohttp's default, which TestServer turns on)."""

    async def _make_runner(self, **_kwargs):
        return web.AppRunner(self.app, **runner_options())


async def serve(tmp_path, check, local_mode=False, strict=False):
    ctx, updates = fake_agent(tmp_path, local_mode, strict)
    app = build_app(ctx, tmp_path)

    async with TestClient(ApiTestServer(app)) as client:
        await check(client, ctx, updates)
