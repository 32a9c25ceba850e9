"""The connectivity monitor: looks at the cloudlink tunnel on a timer and on netlink link events
(the verdict is agent/connectivity/cloudlink.py's), judges the heartbeat from the poller's
results, and derives the device status the dashboard shows — logged on every change
(`device_status_changed`) and published on the bus (`DeviceStatusChanged`). It looks again at
once when a poll finishes or an update status changes (`PollDone`, `UpdateStatusChanged`)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.connectivity import netlink
from agent.connectivity.api_reach import api_reachable
from agent.connectivity.cloudlink import (
    DEFAULT_PROBE_S,
    Cloudlink,
    CloudlinkView,
    VpnConfig,
    VpnKind,
    vpn_config,
)
from agent.events.bus import Bus
from agent.events.kinds import DeviceStatusChanged, PollDone, UpdateStatusChanged
from agent.model.device_status import Links, StatusView, derive
from agent.status.board import StatusBoard
from agent.waits import wait_for

log = structlog.get_logger("agent.connectivity")

__all__ = [
    "DEFAULT_PROBE_S",
    "CloudlinkView",
    "ConnectivityMonitor",
    "ConnectivityView",
    "VpnConfig",
    "VpnKind",
    "vpn_config",
]

# with a VPN, a cut-off device shows within the cloudlink's detection + the connectivity check
# (4 s), a returning tunnel within a probe period
IDLE_PERIOD_S = 10.0  # without one: re-derive the status from the poller's results
POLL_GRACE_S = 60.0  # poll jitter is at most 60 s


@dataclass(frozen=True)
class ConnectivityView:
    view: StatusView
    heartbeat_ok: bool
    heartbeat_last: float | None
    heartbeat_detail: str
    cloudlink: CloudlinkView
    at: float


class ConnectivityMonitor:
    def __init__(
        self,
        vpn: VpnConfig | None,
        status: StatusBoard,
        api_endpoint: str,
        poll_interval_s: Callable[[], float],
        connectivity_check: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
        bus: Bus | None = None,
    ) -> None:
        """`bus`: the agent's (a bus of its own, never heard from, when None)."""
        self._vpn = vpn
        self._status = status
        self._api = api_endpoint
        self._interval = poll_interval_s
        self._check_enabled = connectivity_check
        self._clock = clock
        self._mono = monotonic or time.monotonic
        self._tick = 0.0  # when the current look started (monotonic)
        self._poke = asyncio.Event()
        self.view: ConnectivityView | None = None
        self.probes = 0
        self.cloudlink = Cloudlink(vpn, clock, self._mono)
        self._bus = bus if bus is not None else Bus()
        self._bus.subscribe(PollDone, lambda _: self.poke())
        self._bus.subscribe(UpdateStatusChanged, lambda _: self.poke())

    def poke(self) -> None:
        """Re-derive now (a poll finished, a link changed)."""
        self._poke.set()

    async def probe_cloudlink(self) -> CloudlinkView:
        return await self.cloudlink.look(self._tick)

    # --- heartbeat ----------------------------------------------------------------------------

    async def judge_heartbeat(self, cloudlink: CloudlinkView) -> tuple[bool, str]:
        last = self._status.last_poll
        if self._status.last_poll_error is not None:
            return False, f"last poll failed: {self._status.last_poll_error}"
        if last is None:
            return False, "no successful poll yet"
        age = self._clock() - last
        if age > self._interval() + POLL_GRACE_S:
            return False, f"no successful poll for {age:.0f} s"
        if not cloudlink.ok and self._check_enabled():
            reach = await api_reachable(self._api, self._check_timeout())
            if not reach.ok:
                return False, f"connectivity check: {reach.detail}"
        return True, f"last poll {age:.0f} s ago"

    def _check_timeout(self) -> float:
        """The connectivity check's wait: the probe period, between 3 and 10 s, so that a
        device cut off entirely shows Disconnected within seconds of its tunnel."""
        period = self._vpn.probe_interval_s if self._vpn else IDLE_PERIOD_S
        return min(10.0, max(3.0, period))

    # --- the loop -----------------------------------------------------------------------------

    async def probe_once(self) -> ConnectivityView:
        self.probes += 1
        self._tick = self._mono()
        cloudlink = await self.probe_cloudlink()
        heartbeat_ok, heartbeat_detail = await self.judge_heartbeat(cloudlink)
        links = Links(
            heartbeat_ok=heartbeat_ok,
            cloudlink_ok=cloudlink.ok,
            cloudlink_enabled=cloudlink.enabled,
            updating=self._status.overall_status() == "Updating",
            ever_online=True,
            heartbeat_detail="" if heartbeat_ok else heartbeat_detail,
            cloudlink_detail="" if cloudlink.ok else cloudlink.detail,
        )
        view = ConnectivityView(
            derive(links),
            heartbeat_ok,
            self._status.last_poll,
            heartbeat_detail,
            cloudlink,
            self._clock(),
        )
        previous = self.view
        self.view = view
        if previous is None or _gist(previous.view) != _gist(view.view):
            log.info(
                "device_status_changed",
                status=view.view.status.value,
                legacy_status=view.view.legacy.value,
                reason=view.view.reason,
                heartbeat_ok=heartbeat_ok,
                cloudlink_ok=cloudlink.ok,
            )
            self._bus.publish(DeviceStatusChanged(view.view, heartbeat_ok, cloudlink.ok))
        return view

    async def run(self) -> None:
        stop = threading.Event()
        if self._vpn is not None:
            _start_link_watcher(self._vpn.interface, asyncio.get_running_loop(), self.poke, stop)
        period = self._vpn.probe_interval_s if self._vpn else IDLE_PERIOD_S
        try:
            while True:
                self._poke.clear()
                await self.probe_once()
                # a period from this look's start, not from a probe's timeout: a down tunnel
                # is asked again every period, so its return shows within one (+1 ms: asyncio
                # may fire a timer a hair early)
                left = max(0.0, self._tick + period - self._mono() + 0.001)
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._poke.wait(), timeout=left)
        finally:
            stop.set()


def _gist(view: StatusView) -> tuple[str, str, str]:
    """What a status change is about: the counting seconds in the reason don't make one."""
    return view.status.value, view.legacy.value, re.sub(r"\d+", "N", view.reason)


def _start_link_watcher(
    iface: str, loop: asyncio.AbstractEventLoop, poke: Callable[[], None], stop: threading.Event
) -> None:
    """React to the tunnel interface appearing, going down or away (netlink RTM_*LINK),
    not only on the timer. Runs in a daemon thread; failures fall back to the timer."""

    def watch() -> None:
        try:
            for event, name in netlink.link_events(stop):  # stdlib, no pyroute2
                if name == iface:
                    log.debug("link_event", iface=iface, event=event)
                    loop.call_soon_threadsafe(poke)
        except Exception as exc:
            if not stop.is_set():
                log.warning("link_watch_failed", iface=iface, error=str(exc))

    threading.Thread(target=watch, name=f"netlink-{iface}", daemon=True).start()
