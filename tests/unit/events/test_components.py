"""Each component's side of the bus: what the poller, the board, the connectivity monitor and
the reporter publish, and what the reporter, the monitor and sd_notify do on hearing it."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent import sdnotify
from agent.cloud.client import TargetFetch
from agent.cloud.poller import Poller
from agent.cloud.reporter import Reporter, ReportSources
from agent.connectivity.cloudlink import vpn_config
from agent.connectivity.monitor import ConnectivityMonitor
from agent.errors import CloudError
from agent.events.bus import Bus
from agent.events.kinds import (
    DeviceFieldsChanged,
    DeviceStatusChanged,
    PollDone,
    ReportFailed,
)
from agent.model import UpdateStatus
from agent.model.device_status import DeviceStatus
from agent.status.board import StatusBoard
from agent.store import Store


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Answers:
    def __init__(self, answers: list[object]) -> None:
        self.answers = answers

    async def fetch_target(self, etag: str | None) -> object:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_the_poller_publishes_every_outcome(tmp_path):
    bus = Bus()
    done: list[PollDone] = []
    bus.subscribe(PollDone, done.append)
    store = Store(tmp_path)
    answers = [
        TargetFetch(True, '"e1"', {"x": 1}),
        TargetFetch(False, '"e1"'),
        CloudError("down", 503),
        TargetFetch(True, '"e2"', {"bad": 1}),  # a new document the agent refuses
    ]
    poller = Poller(
        Answers(answers),  # type: ignore[arg-type]
        store,
        StatusBoard(store),
        lambda body, _source: "bad" not in body,
        lambda: 100.0,
        rng=random.Random(0),
        bus=bus,
    )
    for _ in range(len(answers)):
        await poller.poll_once()
    assert done == [
        PollDone(ok=True, new_target=True),
        PollDone(ok=True, new_target=False),
        PollDone(ok=False, error="down"),
        PollDone(ok=True, new_target=True),
    ]


class Client:
    uuid = "dev1"

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.fail = 0

    async def patch_state(self, body: dict[str, dict[str, object]]) -> None:
        if self.fail:
            self.fail -= 1
            raise CloudError("refused", 503)
        self.sent.append(body["dev1"])


async def test_the_reporter_wakes_on_status_and_device_field_changes(tmp_path):
    """Without the bus the reporter would sleep its idle minute: each change goes out at once."""
    bus = Bus()
    store = Store(tmp_path)
    board = StatusBoard(store, bus)
    client = Client()
    fields = {"api_secret": "k1"}
    sources = ReportSources(lambda: dict(fields), dict, lambda: True)
    reporter = Reporter(client, store, board, sources, bus=bus)  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    try:
        await wait_until(lambda: len(client.sent) == 1)  # the first report, at start
        board.ensure_app("a", 1, "app", "r1")
        board.set_update_status("a", "r1", UpdateStatus.DOWNLOADING)
        await wait_until(lambda: "apps" in client.sent[-1])
        fields["api_secret"] = "k2"  # the key was rotated
        bus.publish(DeviceFieldsChanged())
        await wait_until(lambda: client.sent[-1].get("api_secret") == "k2")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_reporter_publishes_its_failures(tmp_path):
    bus = Bus()
    failed: list[ReportFailed] = []
    bus.subscribe(ReportFailed, failed.append)
    store = Store(tmp_path)
    client = Client()
    client.fail = 1
    sources = ReportSources(lambda: {"api_port": 1}, dict, lambda: True)
    reporter = Reporter(client, store, StatusBoard(store, bus), sources, bus=bus)  # type: ignore[arg-type]
    await reporter.tick()
    await reporter.tick()
    assert [f.error for f in failed] == ["refused"]
    assert len(client.sent) == 1


async def test_the_monitor_looks_again_on_a_poll_and_publishes_status_changes(tmp_path):
    """The idle period is 10 s: the second look within the test comes from `PollDone`."""
    bus = Bus()
    board = StatusBoard(Store(tmp_path), bus)
    changes: list[DeviceStatusChanged] = []
    bus.subscribe(DeviceStatusChanged, changes.append)
    mon = ConnectivityMonitor(
        vpn_config(None), board, "http://127.0.0.1:9", lambda: 60.0, lambda: False, bus=bus
    )
    task = asyncio.create_task(mon.run())
    try:
        await wait_until(lambda: mon.probes == 1)
        assert [c.view.status for c in changes] == [DeviceStatus.DISCONNECTED]
        board.mark_poll(True)
        bus.publish(PollDone(ok=True))
        await wait_until(lambda: mon.probes == 2)
        assert [c.view.status for c in changes] == [
            DeviceStatus.DISCONNECTED,
            DeviceStatus.OPERATIONAL,
        ]
        assert changes[-1].heartbeat_ok
        board.ensure_app("a", 1, "app", "r1")
        board.set_update_status("a", "r1", UpdateStatus.DOWNLOADING)  # Updating, at once
        await wait_until(lambda: mon.probes == 3)
        assert changes[-1].view.status is DeviceStatus.UPDATING
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    directory = Path(tempfile.mkdtemp(prefix="da-e-", dir="/tmp"))
    path = str(directory / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()
    os.unlink(path)
    directory.rmdir()


async def test_sdnotify_status_line_shows_the_latest_device_status(
    tmp_path, monkeypatch, notify_socket
):
    monkeypatch.setattr(sdnotify, "STATUS_EVERY_S", 0.02)
    path, sock = notify_socket
    bus = Bus()
    board = StatusBoard(Store(tmp_path), bus)
    reconciler = SimpleNamespace(converged=asyncio.Event())
    reconciler.converged.set()
    poller = SimpleNamespace(polls=1, last_outcome="new target")
    readiness = sdnotify.Readiness(reconciler, poller, True)
    task = asyncio.create_task(
        sdnotify.notify_loop(sdnotify.Notifier(path), board, readiness, None, bus=bus)
    )
    lines: list[str] = []

    def seen(line: str) -> bool:
        while True:
            try:
                lines.extend(sock.recv(4096).decode().splitlines())
            except BlockingIOError:
                return line in lines

    try:
        await wait_until(lambda: seen("STATUS=Idle"))
        mon = ConnectivityMonitor(
            vpn_config(None), board, "http://127.0.0.1:9", lambda: 60.0, lambda: False, bus=bus
        )
        board.mark_poll(True)
        await mon.probe_once()  # publishes Operational
        await wait_until(lambda: seen("STATUS=Idle · Operational"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
