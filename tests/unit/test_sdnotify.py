"""sd_notify without systemd: datagrams to our own socket, paths and abstract names."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.reconcile.status import StatusBoard
from agent.sdnotify import Notifier, Readiness, notify_loop, status_line, watchdog_interval_s
from agent.store import Store


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    directory = Path(tempfile.mkdtemp(prefix="da-n-", dir="/tmp"))
    path = str(directory / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()
    os.unlink(path)
    directory.rmdir()


def test_sends_to_a_path_socket(listener):
    path, sock = listener
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.send("READY=1", "STATUS=Idle")
    assert sock.recv(4096) == b"READY=1\nSTATUS=Idle"


def test_sends_to_an_abstract_socket():
    name = f"da-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        assert Notifier("@" + name).send("WATCHDOG=1")
        assert sock.recv(64) == b"WATCHDOG=1"


def test_disabled_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled and not notifier.send("READY=1")


def test_a_missing_socket_is_counted_not_raised(tmp_path):
    notifier = Notifier(str(tmp_path / "gone"))
    assert not notifier.send("READY=1") and notifier.errors == 1


def test_watchdog_interval_is_half_of_watchdog_usec():
    assert watchdog_interval_s({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "junk"}) is None
    mine = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": mine}) == 1.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None


def fakes(polls: int = 0) -> tuple[SimpleNamespace, SimpleNamespace]:
    reconciler = SimpleNamespace(converged=asyncio.Event())
    poller = SimpleNamespace(polls=polls, last_outcome="not modified" if polls else None)
    return reconciler, poller


def test_ready_rules():
    clock = [0.0]
    reconciler, poller = fakes()
    with_target = Readiness(
        reconciler, poller, had_target=True, deadline_s=100, clock=lambda: clock[0]
    )
    without = Readiness(reconciler, poller, had_target=False, clock=lambda: clock[0])
    assert with_target.reason() is None and without.reason() is None
    poller.polls, poller.last_outcome = 1, "error: offline"
    assert without.reason() == "no persisted target, first poll done"
    assert with_target.reason() is None  # a persisted target must be applied first
    reconciler.converged.set()
    assert with_target.reason() == "target applied"
    reconciler.converged.clear()
    clock[0] = 100.0
    assert with_target.reason() == "deadline"


def test_status_line_summarises_the_board(tmp_path):
    board = StatusBoard(Store(tmp_path))
    assert status_line(board) == "Idle"
    board.ensure_app("a1", 1, "main", "r1")
    assert status_line(board).startswith("Idle · main: ")


def test_notify_loop_says_ready_pings_and_stops(listener, tmp_path):
    path, sock = listener
    reconciler, poller = fakes(polls=1)
    board = StatusBoard(Store(tmp_path))

    async def scenario() -> None:
        task = asyncio.create_task(
            notify_loop(Notifier(path), board, Readiness(reconciler, poller, False), 0.05)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    messages = []
    sock.settimeout(0.2)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    lines = [line for m in messages for line in m.splitlines()]
    assert lines[0] == "READY=1"
    assert "STATUS=Idle" in lines
    assert lines.count("WATCHDOG=1") >= 4
    assert lines[-1] == "STOPPING=1"
