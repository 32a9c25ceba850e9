"""Is the tunnel carrying traffic? The decision, kept pure.

Counters first: the peer's rx counter grew since the last look → traffic proves the tunnel,
nothing is sent. Otherwise one small probe (an ICMP echo or a TCP connect to the peer's tunnel
address) goes out — at most one per probe period, however often the monitor looks — and its
answer decides. No answer within the probe timeout → the tunnel is down; the next look that
sees rx grow, or the next answered probe, brings it back. This is what tells a blocked tunnel
within seconds when the server sends no keepalives (only the 180 s handshake age told before).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Tracker:
    """What the last looks and probes found (replaced, never mutated)."""

    rx: int | None = None  # the rx counter at the last look
    probed_at: float | None = None  # when the last probe packet went out
    alive: bool | None = None  # the current verdict; None until traffic or a probe tells
    proven_at: float | None = None  # when traffic or an answer last proved the tunnel
    detail: str = ""


@dataclass(frozen=True)
class Look:
    tracker: Tracker
    send_probe: bool  # True: send one probe now and report its outcome with `answered`


def look(tracker: Tracker, now: float, rx: int, period_s: float) -> Look:
    """Counters read at `now`: rx grew → alive, no probe; else probe — unless traffic or an
    answer proved the tunnel less than a period ago, or a probe went out less than a period ago
    (pokes between two timer ticks send nothing). A counter that went backwards (the interface
    was recreated) is a new baseline, not a proof; a clock that went backwards doesn't hold
    probes back."""
    grew = tracker.rx is not None and rx > tracker.rx
    if grew:
        return Look(replace(tracker, rx=rx, alive=True, proven_at=now, detail="traffic"), False)
    tracker = replace(tracker, rx=rx)
    due = _elapsed(tracker.proven_at, now, period_s) and _elapsed(tracker.probed_at, now, period_s)
    return Look(tracker, due)


def _elapsed(since: float | None, now: float, period_s: float) -> bool:
    return since is None or now - since >= period_s or now < since


def sent(tracker: Tracker, now: float) -> Tracker:
    """A probe packet went out at `now`."""
    return replace(tracker, probed_at=now)


def answered(tracker: Tracker, now: float, ok: bool, detail: str) -> Tracker:
    """The probe's outcome: an answer proves the path both ways; none means down."""
    if ok:
        return replace(tracker, alive=True, proven_at=now, detail=detail)
    return replace(tracker, alive=False, detail=detail)


def probe_timeout(period_s: float) -> float:
    """How long to wait for an answer: half the period, between 1 and 3 s (a tunnel whose
    round trip takes longer than that is of no use for a terminal anyway)."""
    return min(3.0, max(1.0, period_s / 2))


def peer_address(
    configured: str | None,
    allowed_ips: tuple[str, ...],
    own: tuple[str, int] | None,
) -> str | None:
    """The peer's tunnel address to probe: the configured one; else a single-host allowed IP of
    the WireGuard peer (a /32); else the first host of the tunnel interface's network
    (`own` = (address, prefix length)), which is where VPN servers sit (OpenVPN's `server`,
    balena's WireGuard gateway), unless that is our own address. None: can't tell."""
    if configured:
        return configured
    for entry in allowed_ips:
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.prefixlen == 32:
            return str(net.network_address)
    if own is None:
        return None
    try:
        iface = ipaddress.ip_interface(f"{own[0]}/{own[1]}")
    except ValueError:
        return None
    if iface.version != 4 or iface.network.prefixlen >= 31:
        return None
    first = iface.network.network_address + 1
    return None if first == iface.ip else str(first)
