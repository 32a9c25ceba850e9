"""sd_notify without systemd: datagrams to our own socket, paths and abstract names."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.sdnotify import (
    Notifier,
    Readiness,
    notify_loop,
    status_line,
    watchdog_interval_s,
    watchdog_loop,
)
from agent.status.board import StatusBoard
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
    # the poll brought the target and it was applied before the tick looked: the poll came first
    assert without.reason() == "no persisted target, first poll done"
    reconciler.converged.clear()
    clock[0] = 100.0
    assert with_target.reason() == "deadline"


def test_status_line_summarises_the_board(tmp_path):
    board = StatusBoard(Store(tmp_path))
    assert status_line(board) == "Idle"
    board.ensure_app("a1", 1, "main", "r1")
    assert status_line(board).startswith("Idle · main: ")


async def test_notify_loop_says_ready_pings_and_stops(listener, tmp_path):
    path, sock = listener
    reconciler, poller = fakes(polls=1)
    board = StatusBoard(Store(tmp_path))

    task = asyncio.create_task(
        notify_loop(Notifier(path), board, Readiness(reconciler, poller, False), 0.05)
    )
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
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


async def test_watchdog_pings_follow_their_own_schedule(listener):
    """The n-th ping is due at start + n·interval: over 15 periods the pings average the
    interval (no drift, no aliasing against the READY/STATUS ticks, which once made the gaps
    1.5 and 0.5 periods)."""
    path, sock = listener
    reconciler, poller = fakes(polls=1)
    interval = 0.2
    arrivals: list[float] = []
    done = threading.Event()

    def read() -> None:  # as systemd does: at once (the queue holds only ~10 datagrams)
        sock.settimeout(0.05)
        while not done.is_set():
            try:
                data = sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in data.splitlines():
                arrivals.append(time.monotonic())

    async def scenario() -> None:
        readiness = Readiness(reconciler, poller, False)
        task = asyncio.create_task(notify_loop(Notifier(path), board, readiness, interval))
        await asyncio.sleep(interval * 15 + interval / 2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    board = StatusBoard(Store(Path(tempfile.mkdtemp(prefix="da-s-", dir="/tmp"))))
    reader = threading.Thread(target=read)
    reader.start()
    try:
        await scenario()
        await asyncio.sleep(0.1)
    finally:
        done.set()
        reader.join()
    assert len(arrivals) == 16, arrivals
    mean_gap = (arrivals[-1] - arrivals[0]) / 15
    assert mean_gap == pytest.approx(interval, rel=0.05)


async def test_the_watchdog_schedule_does_not_drift_or_burst(monkeypatch):
    """On a fake clock: pings at exactly 0, 1, 2…·interval however late each wake-up is; after
    the loop was blocked for longer than a period, one ping at once and then on schedule again
    from there (no burst of catch-up pings)."""
    now = [0.0]
    sent: list[float] = []
    wakeup_lateness = iter([0.3, 0.1, 0.0, 0.45, 2.5, 0.0, 0.2, 0.0])

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds + next(wakeup_lateness)
        if len(sent) >= 8:
            raise asyncio.CancelledError

    class Recorder:
        def send(self, *lines: str) -> bool:
            sent.append(now[0])
            return True

    monkeypatch.setattr("agent.sdnotify.asyncio.sleep", fake_sleep)

    with pytest.raises(asyncio.CancelledError):
        await watchdog_loop(Recorder(), 1.0, clock=lambda: now[0])
    # due at 0, 1, 2, 3, 4 (each woken late, never drifting), then blocked: 4.45+1+2.5 -> at
    # once, and due one period later again
    assert sent[:5] == pytest.approx([0.0, 1.3, 2.1, 3.0, 4.45])
    assert sent[5] == pytest.approx(7.5)  # due at 5, the loop was blocked until 7.5
    assert sent[6] == pytest.approx(8.5)  # schedule restarted from 7.5
    assert sent[7] == pytest.approx(9.7)
