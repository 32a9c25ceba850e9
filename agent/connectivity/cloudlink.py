"""The cloudlink verdict: is the VPN tunnel carrying traffic? Decided here only, by the
connectivity monitor on every look and by `device-agent diagnose` in one look, so the status
and the diagnosis can't disagree.

The tunnel is judged by its rx counter, and when that stands still, by one small probe to the
peer's tunnel address (agent/connectivity/liveness.py decides, probe.py sends): a server that
sends no keepalives is still told from a blocked one within a probe period and a timeout.
Without a peer address to probe, a WireGuard tunnel is judged by its handshake age and by
silences longer than the peer's usual rhythm.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import structlog

from agent.connectivity import liveness, openvpn, wireguard
from agent.connectivity.probe import ICMP, ProbeMethod, ProbeResult, iface_ipv4, send_probe
from agent.errors import ConfigError

log = structlog.get_logger("agent.connectivity")

# an idle tunnel costs one probe every 2 periods (its answer proves the next one); a blocked
# tunnel shows within 2 periods + the probe timeout (2 s) at worst
DEFAULT_PROBE_S = 4.0


class VpnKind(StrEnum):
    """config.json `vpn.kind`."""

    WIREGUARD = "wireguard"
    OPENVPN = "openvpn"


DEFAULT_INTERFACE: Mapping[VpnKind, str] = {VpnKind.WIREGUARD: "wg0", VpnKind.OPENVPN: "tun0"}
# the likely cause of a tunnel that is down while the API is reachable (diagnose's verdict)
BLOCKED_HINT: Mapping[VpnKind, str] = {
    VpnKind.WIREGUARD: "UDP to the endpoint blocked?",
    VpnKind.OPENVPN: "VPN port blocked or server unreachable?",
}


@dataclass(frozen=True)
class VpnConfig:
    kind: VpnKind
    interface: str
    management: str | None = None
    probe_interval_s: float = DEFAULT_PROBE_S
    probe: ProbeMethod = ICMP
    probe_address: str | None = None  # the peer's tunnel address; None: worked out


@dataclass(frozen=True)
class CloudlinkView:
    enabled: bool
    kind: VpnKind | None
    ok: bool
    last_handshake: float | None = None
    detail: str = ""


Probe = Callable[[VpnConfig], Awaitable[CloudlinkView]]


class Cloudlink:
    """Looks at the tunnel; keeps what earlier looks learned (counters, probes, the peer's
    rhythm), so a monitor that looks every period judges better than a single look can."""

    def __init__(
        self,
        vpn: VpnConfig | None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.vpn = vpn
        self._clock = clock
        # probe timing: monotonic (a wall clock stepping would hold probes back or bunch them),
        # and the very clock the monitor's ticks are scheduled on
        self._mono = monotonic or time.monotonic
        self._tick = 0.0  # when the current look started
        self._rx: tuple[int, float] | None = None  # last rx counter and when it last moved
        # The usual silence between two arrivals from the peer, learned from the last few
        # gaps: a peer keeping the tunnel warm with its own keepalives talks every few seconds,
        # so a longer silence means a blocked tunnel; a peer that only answers handshakes
        # (every 2 minutes) is, in effect, judged by the handshake age alone.
        self._gaps: deque[float] = deque(maxlen=5)
        self._live = liveness.Tracker()
        self.packets = 0  # probe packets sent through the tunnel
        self.send_probe: Callable[[ProbeMethod, str, float, str], Awaitable[ProbeResult]] = (
            send_probe
        )
        self.iface_ipv4: Callable[[str], tuple[str, int] | None] = iface_ipv4
        # each kind's look: a new kind is one entry here (and one in the maps above)
        self.probes: Mapping[VpnKind, Probe] = {
            VpnKind.WIREGUARD: self._wireguard,
            VpnKind.OPENVPN: self._openvpn,
        }

    async def look(self, tick: float | None = None) -> CloudlinkView:
        """The verdict now; `tick` is when the caller's look started (monotonic)."""
        self._tick = self._mono() if tick is None else tick
        vpn = self.vpn
        if vpn is None:
            return CloudlinkView(False, None, False, detail="cloudlink disabled")
        return await self.probes[vpn.kind](vpn)

    async def _openvpn(self, vpn: VpnConfig) -> CloudlinkView:
        st = await openvpn.probe(vpn.interface, vpn.management)
        detail = st.error or f"OpenVPN {st.state} ({st.source})"
        address = self._peer_address(vpn, ())
        if not st.connected or st.rx_bytes is None or address is None:
            self._live = liveness.Tracker()
            return CloudlinkView(True, VpnKind.OPENVPN, st.connected, st.since, detail)
        alive = await self._alive(vpn, st.rx_bytes, address)
        if not alive:
            detail = f"OpenVPN {st.state}, but {self._live.detail}"
        return CloudlinkView(True, VpnKind.OPENVPN, alive, st.since, detail)

    async def _wireguard(self, vpn: VpnConfig) -> CloudlinkView:
        wg = await wireguard.probe(vpn.interface)
        if wg.exists and wg.up:
            address = self._peer_address(vpn, wg.allowed_ips)
            if address is not None:
                return await self._probe_wireguard(vpn, wg, address)
        self._live = liveness.Tracker()
        return self.judge_wireguard(wg)

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
            return CloudlinkView(
                True, VpnKind.WIREGUARD, True, wg.last_handshake, f"WireGuard {shake}"
            )
        assert self._rx is not None
        quiet = f"for {now - self._rx[1]:.0f} s" if self._rx[1] else "since the agent started"
        shake = "no handshake yet" if age is None else f"handshake {age:.0f} s ago"
        return CloudlinkView(
            True,
            VpnKind.WIREGUARD,
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

    def judge_wireguard(self, wg: wireguard.WireGuardState) -> CloudlinkView:
        """Without a peer address to probe: the handshake age, and silences longer than the
        peer's usual rhythm once one has been learned."""
        now = self._clock()
        kind = VpnKind.WIREGUARD
        if wg.error and not wg.exists:
            return CloudlinkView(True, kind, False, None, wg.error)
        if not wg.up:
            return CloudlinkView(
                True, kind, False, wg.last_handshake, f"interface {wg.iface} is down"
            )
        self._note_rx(wg.rx_bytes, now)
        assert self._rx is not None
        age = wg.handshake_age(now)
        limit = wireguard.HANDSHAKE_TIMEOUT_S + wg.keepalive_s
        if age is None:
            return CloudlinkView(True, kind, False, None, "no WireGuard handshake yet")
        if age > limit:
            detail = f"no WireGuard handshake for {age:.0f} s"
            return CloudlinkView(True, kind, False, wg.last_handshake, detail)
        quiet = now - self._rx[1]
        window = max(3.0, 3.0 * wg.keepalive_s, 2.0 * max(self._gaps, default=0.0))
        if self._gaps and quiet > window:
            detail = (
                f"nothing received over WireGuard for {quiet:.0f} s (handshake {age:.0f} s ago)"
            )
            return CloudlinkView(True, kind, False, wg.last_handshake, detail)
        detail = f"WireGuard handshake {age:.0f} s ago"
        return CloudlinkView(True, kind, True, wg.last_handshake, detail)


def vpn_config(raw: object) -> VpnConfig | None:
    """config.json `vpn`: {"kind": "wireguard"|"openvpn", "interface", "management",
    "probeInterval" (s), "probe" ("icmp" | "tcp:PORT"), "probeAddress" (the peer's tunnel
    address, when neither a /32 allowed IP nor the interface's network tells)}; absent means
    cloudlink is disabled."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("'vpn' must be an object")
    raw_kind = raw.get("kind")
    try:
        kind = VpnKind(raw_kind if isinstance(raw_kind, str) else "")
    except ValueError:
        raise ConfigError(f"'vpn.kind' must be {' or '.join(VpnKind)}") from None
    interface = raw.get("interface", DEFAULT_INTERFACE[kind])
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
    return VpnConfig(kind, interface, management, float(interval), probe, address)


def _ipv4(value: object) -> bool:
    try:
        ipaddress.IPv4Address(value if isinstance(value, str) else "")
    except ValueError:
        return False
    return True
