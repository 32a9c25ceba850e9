"""The connectivity monitor: probes the cloudlink tunnel on a timer and on netlink link events,
judges the heartbeat from the poller's results, and derives the device status the dashboard
shows — logged on every change (`device_status_changed`) and kept on the status board."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.connectivity import openvpn, wireguard
from agent.connectivity.health import api_reachable
from agent.connectivity.status import Links, StatusView, derive
from agent.reconcile.status import StatusBoard

log = structlog.get_logger("agent.connectivity")

DEFAULT_PROBE_S = 10.0
POLL_GRACE_S = 60.0  # poll jitter is at most 60 s


@dataclass(frozen=True)
class VpnConfig:
    kind: str  # wireguard | openvpn
    interface: str
    management: str | None = None
    probe_interval_s: float = DEFAULT_PROBE_S


@dataclass(frozen=True)
class CloudlinkView:
    enabled: bool
    kind: str | None
    ok: bool
    last_handshake: float | None = None
    detail: str = ""


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
    ) -> None:
        self._vpn = vpn
        self._status = status
        self._api = api_endpoint
        self._interval = poll_interval_s
        self._check_enabled = connectivity_check
        self._clock = clock
        self._poke = asyncio.Event()
        self._rx: tuple[int, float] | None = None  # last rx counter and when it last moved
        # The usual silence between two arrivals from the peer, learned from the last few
        # gaps: a peer keeping the tunnel warm with its own keepalives talks every few seconds,
        # so a longer silence means a blocked tunnel; a peer that only answers handshakes
        # (every 2 minutes) is, in effect, judged by the handshake age alone.
        self._gaps: deque[float] = deque(maxlen=5)
        self.view: ConnectivityView | None = None
        self.probes = 0

    def poke(self) -> None:
        """Re-derive now (a poll finished, a link changed)."""
        self._poke.set()

    # --- cloudlink ----------------------------------------------------------------------------

    async def probe_cloudlink(self) -> CloudlinkView:
        vpn = self._vpn
        if vpn is None:
            return CloudlinkView(False, None, False, detail="cloudlink disabled")
        if vpn.kind == "openvpn":
            st = await openvpn.probe(vpn.interface, vpn.management)
            detail = st.error or f"OpenVPN {st.state} ({st.source})"
            return CloudlinkView(True, "openvpn", st.connected, st.since, detail)
        wg = await wireguard.probe(vpn.interface)
        return self._judge_wireguard(wg)

    def _judge_wireguard(self, wg: wireguard.WireGuardState) -> CloudlinkView:
        now = self._clock()
        if wg.error and not wg.exists:
            return CloudlinkView(True, "wireguard", False, None, wg.error)
        if not wg.up:
            return CloudlinkView(
                True, "wireguard", False, wg.last_handshake, f"interface {wg.iface} is down"
            )
        if self._rx is None:
            self._rx = (wg.rx_bytes, 0.0)  # when it moved before is unknown
        elif wg.rx_bytes != self._rx[0]:
            if self._rx[1]:
                self._gaps.append(now - self._rx[1])
            self._rx = (wg.rx_bytes, now)
        age = wg.handshake_age(now)
        limit = wireguard.HANDSHAKE_TIMEOUT_S + wg.keepalive_s
        if age is None:
            return CloudlinkView(True, "wireguard", False, None, "no WireGuard handshake yet")
        if age > limit:
            return CloudlinkView(
                True,
                "wireguard",
                False,
                wg.last_handshake,
                f"no WireGuard handshake for {age:.0f} s",
            )
        quiet = now - self._rx[1]
        window = max(3.0, 3.0 * wg.keepalive_s, 2.0 * max(self._gaps, default=0.0))
        if self._gaps and quiet > window:
            return CloudlinkView(
                True,
                "wireguard",
                False,
                wg.last_handshake,
                f"nothing received over WireGuard for {quiet:.0f} s (handshake {age:.0f} s ago)",
            )
        return CloudlinkView(
            True, "wireguard", True, wg.last_handshake, f"WireGuard handshake {age:.0f} s ago"
        )

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
            reach = await api_reachable(self._api)
            if not reach.ok:
                return False, f"connectivity check: {reach.detail}"
        return True, f"last poll {age:.0f} s ago"

    # --- the loop -----------------------------------------------------------------------------

    async def probe_once(self) -> ConnectivityView:
        self.probes += 1
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
        self._status.connectivity = view
        if previous is None or _gist(previous.view) != _gist(view.view):
            log.info(
                "device_status_changed",
                status=view.view.status.value,
                legacy_status=view.view.legacy.value,
                reason=view.view.reason,
                heartbeat_ok=heartbeat_ok,
                cloudlink_ok=cloudlink.ok,
            )
        return view

    async def run(self) -> None:
        stop = threading.Event()
        if self._vpn is not None:
            _start_link_watcher(self._vpn.interface, asyncio.get_running_loop(), self.poke, stop)
        period = self._vpn.probe_interval_s if self._vpn else DEFAULT_PROBE_S
        try:
            while True:
                self._poke.clear()
                await self.probe_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), timeout=period)
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
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                ipr.bind()
                while not stop.is_set():
                    for msg in ipr.get():
                        name = msg.get_attr("IFLA_IFNAME") if hasattr(msg, "get_attr") else None
                        if name == iface:
                            log.debug("link_event", iface=iface, event=msg.get("event"))
                            loop.call_soon_threadsafe(poke)
        except Exception as exc:
            if not stop.is_set():
                log.warning("link_watch_failed", iface=iface, error=str(exc))

    threading.Thread(target=watch, name=f"netlink-{iface}", daemon=True).start()


def vpn_config(raw: object) -> VpnConfig | None:
    """config.json `vpn`: {"kind": "wireguard"|"openvpn", "interface", "management",
    "probeInterval" (s)}; absent means cloudlink is disabled."""
    from agent.errors import ConfigError

    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("'vpn' must be an object")
    kind = raw.get("kind")
    if kind not in ("wireguard", "openvpn"):
        raise ConfigError("'vpn.kind' must be wireguard or openvpn")
    interface = raw.get("interface", "wg0" if kind == "wireguard" else "tun0")
    management = raw.get("management")
    interval = raw.get("probeInterval", DEFAULT_PROBE_S)
    if not isinstance(interface, str) or not interface:
        raise ConfigError("'vpn.interface' must be an interface name")
    if management is not None and (
        not isinstance(management, str) or not management.rpartition(":")[2].isdigit()
    ):
        raise ConfigError("'vpn.management' must be host:port")
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 0.2:
        raise ConfigError("'vpn.probeInterval' must be a number of seconds >= 0.2")
    return VpnConfig(str(kind), interface, management, float(interval))
