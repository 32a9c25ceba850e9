"""The connectivity monitor: probes the cloudlink tunnel on a timer and on netlink link events,
judges the heartbeat from the poller's results, and derives the device status the dashboard
shows — logged on every change (`device_status_changed`) and kept on the status board.

The tunnel is judged by its rx counter, and when that stands still, by one small probe to the
peer's tunnel address (agent/connectivity/liveness.py decides, probe.py sends): a server that
sends no keepalives is still told from a blocked one within a probe period and a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from agent.connectivity import liveness, netlink, openvpn, wireguard
from agent.connectivity.health import api_reachable
from agent.connectivity.probe import ICMP, ProbeMethod, ProbeResult, iface_ipv4, send_probe
from agent.connectivity.status import Links, StatusView, derive
from agent.reconcile.status import StatusBoard

log = structlog.get_logger("agent.connectivity")

# with a VPN: an idle tunnel costs one probe every 2 periods (its answer proves the next one);
# a blocked tunnel shows within 2 periods + the probe timeout (2 s) at worst, a cut-off device
# within that + the connectivity check (4 s), a returning tunnel within a period
DEFAULT_PROBE_S = 4.0
IDLE_PERIOD_S = 10.0  # without one: re-derive the status from the poller's results
POLL_GRACE_S = 60.0  # poll jitter is at most 60 s


@dataclass(frozen=True)
class VpnConfig:
    kind: str  # wireguard | openvpn
    interface: str
    management: str | None = None
    probe_interval_s: float = DEFAULT_PROBE_S
    probe: ProbeMethod = ICMP
    probe_address: str | None = None  # the peer's tunnel address; None: worked out


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
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._vpn = vpn
        self._status = status
        self._api = api_endpoint
        self._interval = poll_interval_s
        self._check_enabled = connectivity_check
        self._clock = clock
        # probe timing: monotonic (a wall clock stepping would hold probes back or bunch them),
        # and the very clock the loop's ticks are scheduled on
        self._mono = monotonic or time.monotonic
        self._tick = 0.0  # when the current look started
        self._poke = asyncio.Event()
        self._rx: tuple[int, float] | None = None  # last rx counter and when it last moved
        # The usual silence between two arrivals from the peer, learned from the last few
        # gaps: a peer keeping the tunnel warm with its own keepalives talks every few seconds,
        # so a longer silence means a blocked tunnel; a peer that only answers handshakes
        # (every 2 minutes) is, in effect, judged by the handshake age alone.
        self._gaps: deque[float] = deque(maxlen=5)
        self.view: ConnectivityView | None = None
        self.probes = 0
        self._live = liveness.Tracker()
        self.packets = 0  # probe packets sent through the tunnel
        self.send_probe: Callable[[ProbeMethod, str, float, str], Awaitable[ProbeResult]] = (
            send_probe
        )
        self.iface_ipv4: Callable[[str], tuple[str, int] | None] = iface_ipv4

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
            address = self._peer_address(vpn, ())
            if not st.connected or st.rx_bytes is None or address is None:
                self._live = liveness.Tracker()
                return CloudlinkView(True, "openvpn", st.connected, st.since, detail)
            alive = await self._alive(vpn, st.rx_bytes, address)
            if not alive:
                detail = f"OpenVPN {st.state}, but {self._live.detail}"
            return CloudlinkView(True, "openvpn", alive, st.since, detail)
        wg = await wireguard.probe(vpn.interface)
        if wg.exists and wg.up:
            address = self._peer_address(vpn, wg.allowed_ips)
            if address is not None:
                return await self._probe_wireguard(vpn, wg, address)
        self._live = liveness.Tracker()
        return self._judge_wireguard(wg)

    def _peer_address(self, vpn: VpnConfig, allowed_ips: tuple[str, ...]) -> str | None:
        own = None if vpn.probe_address else self.iface_ipv4(vpn.interface)
        return liveness.peer_address(vpn.probe_address, allowed_ips, own)

    async def _alive(self, vpn: VpnConfig, rx: int, address: str) -> bool:
        """Counters, else one probe (at most one a period): is the tunnel carrying traffic?"""
        # the look's time is its tick's start: ticks a period apart are a period apart here too
        step = liveness.look(self._live, self._tick, rx, vpn.probe_interval_s)
        self._live = step.tracker
        if step.send_probe:
            self._live = liveness.sent(self._live, self._tick)
            self.packets += 1
            timeout = liveness.probe_timeout(vpn.probe_interval_s)
            result = await self.send_probe(vpn.probe, address, timeout, vpn.interface)
            self._live = liveness.answered(self._live, self._mono(), result.ok, result.detail)
            log.debug("cloudlink_probe", address=address, ok=result.ok, detail=result.detail)
        return bool(self._live.alive)

    async def _probe_wireguard(
        self, vpn: VpnConfig, wg: wireguard.WireGuardState, address: str
    ) -> CloudlinkView:
        now = self._clock()
        self._note_rx(wg.rx_bytes, now)
        alive = await self._alive(vpn, wg.rx_bytes, address)
        age = wg.handshake_age(self._clock())
        if alive:
            shake = "no handshake seen" if age is None else f"handshake {age:.0f} s ago"
            return CloudlinkView(True, "wireguard", True, wg.last_handshake, f"WireGuard {shake}")
        assert self._rx is not None
        quiet = f"for {now - self._rx[1]:.0f} s" if self._rx[1] else "since the agent started"
        shake = "no handshake yet" if age is None else f"handshake {age:.0f} s ago"
        return CloudlinkView(
            True,
            "wireguard",
            False,
            wg.last_handshake,
            f"nothing received over WireGuard {quiet} ({shake}); {self._live.detail}",
        )

    def _note_rx(self, rx: int, now: float) -> None:
        if self._rx is None:
            self._rx = (rx, 0.0)  # when it moved before is unknown
        elif rx != self._rx[0]:
            if self._rx[1]:
                self._gaps.append(now - self._rx[1])
            self._rx = (rx, now)

    def _judge_wireguard(self, wg: wireguard.WireGuardState) -> CloudlinkView:
        """Without a peer address to probe: the handshake age, and silences longer than the
        peer's usual rhythm once one has been learned."""
        now = self._clock()
        if wg.error and not wg.exists:
            return CloudlinkView(True, "wireguard", False, None, wg.error)
        if not wg.up:
            return CloudlinkView(
                True, "wireguard", False, wg.last_handshake, f"interface {wg.iface} is down"
            )
        self._note_rx(wg.rx_bytes, now)
        assert self._rx is not None
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
                    await asyncio.wait_for(self._poke.wait(), timeout=left)
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


def vpn_config(raw: object) -> VpnConfig | None:
    """config.json `vpn`: {"kind": "wireguard"|"openvpn", "interface", "management",
    "probeInterval" (s), "probe" ("icmp" | "tcp:PORT"), "probeAddress" (the peer's tunnel
    address, when neither a /32 allowed IP nor the interface's network tells)}; absent means
    cloudlink is disabled."""
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
    method = raw.get("probe", "icmp")
    try:
        probe = ProbeMethod.parse(method) if isinstance(method, str) else None
    except ValueError:
        probe = None
    if probe is None:
        raise ConfigError("'vpn.probe' must be icmp or tcp:PORT")
    address = raw.get("probeAddress")
    if address is not None and not _ipv4(address):
        raise ConfigError("'vpn.probeAddress' must be an IPv4 address")
    return VpnConfig(str(kind), interface, management, float(interval), probe, address)


def _ipv4(value: object) -> bool:
    import ipaddress

    try:
        ipaddress.IPv4Address(value if isinstance(value, str) else "")
    except ValueError:
        return False
    return True
