"""The agent under a systemd-compatible notify socket (our own, as systemd would pass it):
READY once ready, WATCHDOG=1 at half of WATCHDOG_USEC from the event loop — and no WATCHDOG
while the loop is blocked (the test-only SIGUSR2 hook) — STATUS lines, STOPPING at the end."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.test_core_loop import release, wait_status

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s
BLOCK_S = 4.0
READY_FIRST = "no persisted target, first poll done"


class NotifySocket:
    """What systemd listens on: records every line with its arrival time."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="da-n-", dir="/tmp"))
        self.path = str(self.dir / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            now = time.monotonic()
            self.lines.extend((now, line) for line in data.decode().splitlines())

    def times(self, line: str) -> list[float]:
        return [t for t, text in list(self.lines) if text == line]

    def starting(self, prefix: str) -> list[str]:
        return [text for _, text in list(self.lines) if text.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        os.unlink(self.path)
        self.dir.rmdir()


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    listener = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", listener.path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("DEVICE_AGENT_TEST_HOOKS", "1")
    monkeypatch.setenv("DEVICE_AGENT_TEST_BLOCK_S", str(BLOCK_S))
    yield listener
    listener.close()


def test_ready_watchdog_status_and_a_blocked_loop(device: Device, images: Images, notify):
    device.cloud.set_target(device.uuid, release(images, "r1", 1, images.main_v1))
    device.agent.start()
    # no persisted target: READY after the first poll attempt
    wait_until(lambda: notify.times("READY=1"), 30, message=device.agent.log_tail)
    assert device.agent.wait_for_event("agent_ready", 5)["reason"] == READY_FIRST
    wait_status(device, "r1", "done")
    wait_until(lambda: any("demo: done" in s for s in notify.starting("STATUS=")), 15)

    # regular pings at half of WATCHDOG_USEC
    time.sleep(3)
    pings = notify.times("WATCHDOG=1")
    recent = [t for t in pings if t > time.monotonic() - 3]
    assert len(recent) >= 5, pings
    gaps = [b - a for a, b in itertools.pairwise(recent)]
    assert max(gaps) < 0.9, gaps

    # the loop blocked: the pings stop for as long, then come back
    blocked_at = time.monotonic()
    assert device.agent.pid is not None
    os.kill(device.agent.pid, signal.SIGUSR2)
    device.agent.wait_for_event("test_hook_loop_unblocked", BLOCK_S + 10)
    time.sleep(1.5)
    around = [t for t in notify.times("WATCHDOG=1") if t > blocked_at - 1]
    gaps = [b - a for a, b in itertools.pairwise(around)]
    assert max(gaps) >= BLOCK_S - 0.5, f"pings went on while the loop was blocked: {gaps}"
    assert around[-1] > blocked_at + BLOCK_S, "pings did not resume"

    # a restart with the target persisted: READY only once it is confirmed on the engine
    assert device.agent.stop() == 0
    assert "STOPPING=1" in notify.starting("STOPPING")
    notify.lines.clear()
    device.agent.start()
    wait_until(lambda: notify.times("READY=1"), 60, message=device.agent.log_tail)
    ready = [e for e in device.agent.events_named("agent_ready") if e["reason"] != READY_FIRST]
    assert ready and ready[-1]["reason"] == "target applied"
