"""systemd's notify protocol, spoken without a dependency: one datagram per message to the
AF_UNIX socket named by $NOTIFY_SOCKET (a path, or `@name` for the abstract namespace).

What the agent says (see `notify_loop`):

- `READY=1` once it has applied or confirmed the persisted target (the reconciler converged).
  With no persisted target, once the first poll attempt finished, successful or not (whatever
  it brought is then applied while the unit is already `active`): an offline device with nothing
  to run is as ready as it will get. A target that can't be reached yet (its
  images not downloadable offline, an app holding its update lock) must not keep the unit in
  `activating` until systemd kills it, so after `READY_DEADLINE_S` the agent says READY anyway and
  logs `ready_without_convergence`.
- `WATCHDOG=1` every half of $WATCHDOG_USEC exactly (its own schedule, see `watchdog_loop`),
  from a task on the main event loop: when the loop is blocked the pings stop and systemd
  restarts the unit. They also stop for good once a supervised task was given up
  (agent/supervise.py): the agent can't mend itself, so systemd restarts it.
- `STATUS=...` whenever the one-line summary changes: the device status (the latest
  `DeviceStatusChanged` on the bus), then each app's update status, e.g.
  `Idle · Operational · main: done`.
- `STOPPING=1` on the way out.

Outside systemd ($NOTIFY_SOCKET unset) every send is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog

from agent.events.bus import Bus
from agent.events.kinds import DeviceStatusChanged
from agent.model.device_status import StatusView
from agent.status.board import StatusBoard

log = structlog.get_logger("agent.sdnotify")

READY_DEADLINE_S = 120.0  # the unit's TimeoutStartSec must be longer than this
READY_CHECK_S = 1.0  # how often readiness is looked at until READY=1 is said
STATUS_EVERY_S = 5.0  # how often the STATUS line is recomputed (sent only when it changes)


class Notifier:
    """Sends notify messages to one socket; `enabled` is False outside systemd."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address: str | bytes | None = None
        if address:
            # "@name" is an abstract socket: a leading NUL byte on the wire
            self.address = b"\0" + address[1:].encode() if address.startswith("@") else address
        self.sent = 0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """One datagram of `KEY=value` lines. False (logged once) when the socket is gone."""
        if self.address is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # never wait on a full receive queue: this runs on the event loop
                sock.sendto(payload, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            self.errors += 1
            if self.errors == 1:
                log.warning("sd_notify_failed", error=str(exc))
            return False
        self.sent += 1
        return True


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of $WATCHDOG_USEC (systemd's advice), or None when no watchdog is asked for or
    $WATCHDOG_PID names another process."""
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


def status_line(status: StatusBoard, device: StatusView | None = None) -> str:
    """`Updating · Operational · main: downloading 40%, web: done` — what `systemctl status`
    shows under the unit (`device`: the device status, once derived)."""
    parts = [status.overall_status()]
    if device is not None:
        parts.append(str(device.status))
    apps = []
    for app in sorted(status.apps.values(), key=lambda a: a.name):
        state = str(app.update_status) if app.update_status is not None else "no release"
        progress = [s.download_progress for s in app.services.values() if s.download_progress]
        if progress and state == "downloading":
            state += f" {min(progress)}%"
        if app.lock_service:
            state += f" (locked by {app.lock_service})"
        apps.append(f"{app.name}: {state}")
    if apps:
        parts.append(", ".join(apps))
    if status.target_error:
        parts.append(f"target invalid: {status.target_error}")
    return " · ".join(parts)


class _Sender(Protocol):
    def send(self, *lines: str) -> bool: ...


class _Poller(Protocol):
    polls: int
    last_outcome: str | None


class _Reconciler(Protocol):
    converged: asyncio.Event


class Readiness:
    """When READY=1 may be said: see the module docstring."""

    def __init__(
        self,
        reconciler: _Reconciler,
        poller: _Poller,
        had_target: bool,
        deadline_s: float = READY_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reconciler = reconciler
        self._poller = poller
        self._had_target = had_target
        self._clock = clock
        self._deadline = clock() + deadline_s

    def reason(self) -> str | None:
        """Why the agent is ready now, or None while it isn't."""
        # Without a persisted target, only a poll can bring one to converge on: the first
        # poll is what made the agent ready, even when the tick comes after the apply too.
        polled = self._poller.polls > 0 and self._poller.last_outcome is not None
        if polled and not self._had_target:
            return "no persisted target, first poll done"
        if self._reconciler.converged.is_set():
            return "target applied"
        if self._clock() >= self._deadline:
            return "deadline"
        return None


async def watchdog_loop(
    notifier: _Sender,
    interval_s: float,
    alive: Callable[[], bool] = lambda: True,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """`WATCHDOG=1` every `interval_s` (half of $WATCHDOG_USEC), on a schedule of its own: the
    n-th ping is due at start + n·interval and the task sleeps until exactly then, so the gaps
    do not drift or alias against other ticks. After the loop was blocked (a ping is late by
    more than a period) the schedule restarts from now: no burst of catch-up pings. While
    `alive()` is False (a supervised task was given up) no ping is sent, and systemd restarts
    the agent when WatchdogSec runs out."""
    due = clock()
    stopped = False
    while True:
        if alive():
            notifier.send("WATCHDOG=1")
        elif not stopped:
            stopped = True
            log.critical("watchdog_pings_stopped", reason="a supervised task was given up")
        due += interval_s
        now = clock()
        if due <= now:
            due = now + interval_s
        await asyncio.sleep(due - now)


async def notify_loop(
    notifier: Notifier,
    status: StatusBoard,
    readiness: Readiness,
    watchdog_s: float | None,
    alive: Callable[[], bool] = lambda: True,
    bus: Bus | None = None,
) -> None:
    """The agent's sd_notify task: READY and STATUS here, the pings in `watchdog_loop` (a child
    task). Runs on the main loop on purpose: a blocked loop stops the WATCHDOG pings, which is
    the whole point. STOPPING=1 is said when the task is cancelled (the agent stops), not when
    it crashes (the supervisor restarts it)."""
    ready = False
    last_status = ""
    next_status = 0.0
    device: StatusView | None = None  # the latest, from the connectivity monitor

    def on_device_status(event: DeviceStatusChanged) -> None:
        nonlocal device
        device = event.view

    unsubscribe = (bus or Bus()).subscribe(DeviceStatusChanged, on_device_status)
    pinger = None
    if watchdog_s is not None:
        pinger = asyncio.create_task(watchdog_loop(notifier, watchdog_s, alive), name="watchdog")
    try:
        while True:
            now = time.monotonic()
            lines: list[str] = []
            if not ready and (why := readiness.reason()) is not None:
                ready = True
                lines.append("READY=1")
                event = "ready_without_convergence" if why == "deadline" else "agent_ready"
                log.info(event, reason=why, notify=notifier.enabled)
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                line = status_line(status, device)
                if line != last_status:
                    last_status = line
                    lines.append(f"STATUS={line}")
            if lines:
                notifier.send(*lines)
            if pinger is not None and pinger.done():
                pinger.result()  # raises what ended it
                raise RuntimeError("the watchdog pinger ended")
            # every second until READY is said, then as often as STATUS needs
            await asyncio.sleep(STATUS_EVERY_S if ready else READY_CHECK_S)
    except asyncio.CancelledError:
        notifier.send("STOPPING=1")
        raise
    finally:
        unsubscribe()
        if pinger is not None:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)


def notify_task(
    status: StatusBoard,
    reconciler: _Reconciler,
    poller: _Poller,
    alive: Callable[[], bool],
    had_target: bool,
    bus: Bus,
) -> Coroutine[Any, Any, None]:
    """The task the daemon spawns; `had_target`: a persisted target was accepted at start;
    `alive`: no supervised task was given up; `bus`: the agent's (the device status)."""
    readiness = Readiness(reconciler, poller, had_target)
    return notify_loop(Notifier(), status, readiness, watchdog_interval_s(), alive=alive, bus=bus)
