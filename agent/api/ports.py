"""What the local API reads and does, as small Protocols: the handlers see an `ApiContext` of
these, built by the daemon from its parts, never the daemon itself. A unit test builds one
from fakes (tests/unit/api/fakes.py).

A new route reads `request.app[CONTEXT]` and uses what it needs; when it needs something no
port has, add a member to the smallest Protocol that fits (or a new small one) and wire it in
agent/daemon.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from agent.api.keys import ApiKeys
from agent.connectivity.monitor import ConnectivityView
from agent.events.bus import Bus
from agent.host import HostControl
from agent.model import CurrentState, TargetState
from agent.status.board import AppView


@dataclass(frozen=True)
class ApiSettings:
    """The device's fixed facts and the API's own settings (config.json)."""

    device_uuid: str
    device_type: str
    device_arch: str
    lock_dir: Path
    data_dir: Path
    host_boot_dir: Path | None
    strict_api_keys: bool = False
    listen_port: int = 48484
    listen_address: str | None = None  # None: every interface


class StatusReader(Protocol):
    """The status board, read only."""

    @property
    def apps(self) -> Mapping[str, AppView]: ...
    @property
    def last_poll(self) -> float | None: ...
    @property
    def last_poll_error(self) -> str | None: ...
    @property
    def last_report(self) -> float | None: ...
    @property
    def last_report_error(self) -> str | None: ...
    @property
    def target_error(self) -> str | None: ...
    @property
    def config_errors(self) -> list[str]: ...
    def container_apps(self) -> list[AppView]: ...
    def overall_status(self) -> str: ...


class WindowVerdict(Protocol):
    """The update window as the latest apply pass saw it."""

    @property
    def hold(self) -> str | None: ...
    @property
    def next_open(self) -> float | None: ...
    @property
    def setting(self) -> str: ...


class AppPlanFlags(Protocol):
    @property
    def blocked_by_lock(self) -> bool: ...
    @property
    def held(self) -> bool: ...


class PlanView(Protocol):
    @property
    def apps(self) -> Mapping[str, AppPlanFlags]: ...


class ApplyLoop(Protocol):
    """The apply loop: whether it converged, what its latest pass decided, and a wake-up."""

    @property
    def converged(self) -> asyncio.Event: ...
    @property
    def window(self) -> WindowVerdict: ...
    @property
    def last_plan(self) -> PlanView | None: ...
    def wake(self, force: bool = False, *, recheck: bool = False) -> None: ...


class Targets(Protocol):
    """Target intake (agent/local/targets.py): the target in force and local mode's posts."""

    @property
    def base(self) -> TargetState | None: ...
    @property
    def local_mode(self) -> bool: ...
    def empty_app(self, app_uuid: str, empty: bool) -> None: ...
    def document(self) -> dict[str, Any] | None: ...
    def accept_local(self, document: dict[str, Any]) -> str | None: ...


class UpdateTrigger(Protocol):
    def request(self, force: bool = False, cancel: bool = False) -> bool:
        """Poll now and re-apply; False when instant updates are off and not forced."""
        ...


class ServiceEngine(Protocol):
    """The engine calls the API makes itself (the apply loop makes the rest)."""

    async def current_state(self, managed_image_ids: frozenset[str]) -> CurrentState: ...
    async def restart(self, container_id: str, timeout: int | None = None) -> None: ...
    async def stop(self, container_id: str, timeout: int | None = None) -> None: ...
    async def start(self, container_id: str) -> None: ...
    async def remove_volume(self, name: str) -> None: ...
    async def image_id(self, ref: str) -> str | None: ...
    def log_lines(
        self, container_id: str, since: float | None, follow: bool
    ) -> AsyncIterator[tuple[float, str]]: ...


class Tags(Protocol):
    async def view(self) -> list[dict[str, Any]]: ...
    async def set(self, tags: dict[str, str]) -> None: ...


class Connectivity(Protocol):
    @property
    def view(self) -> ConnectivityView | None: ...
    async def probe_once(self) -> ConnectivityView: ...


class PollCount(Protocol):
    @property
    def polls(self) -> int: ...


class ReportCount(Protocol):
    @property
    def reports_sent(self) -> int: ...


@dataclass(frozen=True)
class ApiContext:
    settings: ApiSettings
    status: StatusReader
    apply: ApplyLoop
    targets: Targets
    updates: UpdateTrigger
    engine: ServiceEngine
    managed_images: Callable[[], frozenset[str]]
    tags: Tags
    connectivity: Connectivity
    poller: PollCount
    reporter: ReportCount
    keys: ApiKeys
    host: HostControl
    healthy: Callable[[], tuple[bool, str]]  # GET /v1/healthy
    device_fields: Callable[[], dict[str, Any]]  # what the cloud is told about the device
    key_rotated: Callable[[], None]  # the global key changed: report it
    override_lock: Callable[[], bool]  # the fleet's SUPERVISOR_OVERRIDE_LOCK
    bus: Bus  # the agent's: the API's actions published, the agent's own log lines heard


CONTEXT: web.AppKey[ApiContext] = web.AppKey("context")
