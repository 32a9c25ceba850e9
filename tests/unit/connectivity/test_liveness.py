"""The tunnel verdict from counters and probes (pure), and the monitor driving it: no packet
while traffic proves the tunnel, at most one a probe period otherwise."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.connectivity import liveness
from agent.connectivity.liveness import Tracker, answered, look, peer_address, sent
from agent.connectivity.monitor import ConnectivityMonitor, vpn_config
from agent.connectivity.openvpn import OpenVPNState, parse_link_rx
from agent.connectivity.probe import ProbeMethod, ProbeResult, echo_request, is_echo_reply
from agent.connectivity.wireguard import WireGuardState, parse_allowed_ips
from agent.errors import ConfigError
from agent.status.board import StatusBoard
from agent.store import Store

PERIOD = 1.0


def test_growing_rx_proves_the_tunnel_without_a_packet():
    first = look(Tracker(), 100.0, 500, PERIOD)
    assert first.send_probe  # nothing known yet: ask
    t = answered(sent(first.tracker, 100.0), 100.1, True, "ICMP echo answered")
    grew = look(t, 101.0, 600, PERIOD)
    assert not grew.send_probe and grew.tracker.alive and grew.tracker.proven_at == 101.0


def test_no_probe_while_traffic_proved_the_tunnel_within_the_period():
    t = look(Tracker(), 0.0, 500, PERIOD).tracker
    t = look(t, 1.0, 600, PERIOD).tracker  # traffic
    assert not look(t, 1.05, 600, PERIOD).send_probe  # a poke right after: nothing to ask
    assert look(t, 2.0, 600, PERIOD).send_probe  # a period of silence: ask


def test_still_rx_sends_one_probe_a_period_and_its_answer_decides():
    t = look(Tracker(), 0.0, 500, PERIOD).tracker
    step = look(t, 10.0, 500, PERIOD)
    assert step.send_probe
    t = answered(sent(step.tracker, 10.0), 11.0, False, "no answer")
    assert t.alive is False and t.detail == "no answer"
    # pokes between two ticks: no second packet within the period, the verdict stands
    for now in (10.2, 10.5, 10.99):
        again = look(t, now, 500, PERIOD)
        assert not again.send_probe and again.tracker.alive is False
    assert look(t, 11.0, 500, PERIOD).send_probe
    # the tunnel is back: the reply (or anything else arriving) makes rx grow
    back = look(t, 11.5, 592, PERIOD)
    assert back.tracker.alive and not back.send_probe


def test_a_counter_reset_is_a_baseline_not_a_proof():
    t = answered(sent(look(Tracker(), 0.0, 900, PERIOD).tracker, 0.0), 0.5, False, "no answer")
    step = look(t, 0.6, 10, PERIOD)  # interface recreated: counters from zero
    assert step.tracker.alive is False and step.tracker.rx == 10
    assert look(step.tracker, 0.7, 50, PERIOD).tracker.alive  # then growth counts


def test_a_clock_stepping_back_does_not_hold_probes_back():
    t = sent(look(Tracker(), 1_000.0, 1, PERIOD).tracker, 1_000.0)
    assert look(t, 500.0, 1, PERIOD).send_probe


@given(
    st.lists(
        st.tuples(st.floats(0.0, 3.0), st.integers(0, 3), st.booleans()), min_size=1, max_size=60
    ),
    st.sampled_from([0.5, 1.0, 5.0]),
)
def test_at_most_one_packet_a_period_and_none_while_rx_grows(steps, period):
    """Any rhythm of looks (timer ticks and pokes), any counters, any answers."""
    t, now, rx = Tracker(), 0.0, 0
    sends: list[float] = []
    proofs: list[float] = []  # rx growth or an answer
    for gap, growth, ok in steps:
        now += gap
        grew = t.rx is not None and growth > 0
        rx += growth
        step = look(t, now, rx, period)
        t = step.tracker
        if grew:
            assert not step.send_probe and t.alive
            proofs.append(now)
        if step.send_probe:
            assert not proofs or now - proofs[-1] >= period  # traffic proved it lately: none
            sends.append(now)
            t = answered(sent(t, now), now, ok, "x")
            assert t.alive is ok
            if ok:
                proofs.append(now)
        elif not grew and proofs and now - proofs[-1] < period:
            assert t.alive  # a recent proof holds between two probes
    assert all(b - a >= period for a, b in itertools.pairwise(sends))


def test_probe_timeout_is_half_the_period_within_one_to_three_seconds():
    assert [liveness.probe_timeout(p) for p in (0.2, 1.0, 4.0, 5.0, 10.0)] == [
        1.0,
        1.0,
        2.0,
        2.5,
        3.0,
    ]


def test_peer_address_from_config_allowed_ips_or_the_interface_network():
    assert peer_address("10.9.0.1", ("10.232.1.1/32",), None) == "10.9.0.1"
    assert peer_address(None, ("fd00::1/128", "10.232.1.1/32"), ("10.232.1.2", 30)) == (
        "10.232.1.1"
    )
    # a wider allowed IP (a whole VPN subnet): the first host of our network, the gateway
    assert peer_address(None, ("10.240.0.0/12",), ("10.240.3.7", 12)) == "10.240.0.1"
    assert peer_address(None, (), ("10.233.1.2", 24)) == "10.233.1.1"  # OpenVPN's server
    assert peer_address(None, (), ("10.233.1.1", 24)) is None  # that's us
    assert peer_address(None, ("junk",), ("10.0.0.2", 32)) is None  # point-to-point: no guess
    assert peer_address(None, (), None) is None


def test_echo_packets_and_replies():
    request = echo_request(0x1234, 7)
    assert request[0] == 8 and int.from_bytes(request[4:6], "big") == 0x1234
    reply = bytes([0, 0]) + request[2:]
    assert is_echo_reply(reply, False, b"", 0, 7)  # datagram socket: id rewritten, seq counts
    assert not is_echo_reply(reply, False, b"", 0, 8)
    header = bytes([0x45]) + bytes(11) + bytes([10, 0, 0, 1]) + bytes([10, 0, 0, 2])
    assert is_echo_reply(header + reply, True, bytes([10, 0, 0, 1]), 0x1234, 7)
    assert not is_echo_reply(header + reply, True, bytes([10, 0, 0, 9]), 0x1234, 7)
    assert not is_echo_reply(header + request, True, bytes([10, 0, 0, 1]), 0x1234, 7)


def test_probe_settings():
    assert ProbeMethod.parse("tcp:443") == ProbeMethod("tcp", 443)
    for bad in ("udp:1", "tcp:0", "tcp:x", "tcp:70000"):
        with pytest.raises(ValueError):
            ProbeMethod.parse(bad)
    cfg = vpn_config({"kind": "wireguard", "probe": "tcp:22", "probeAddress": "10.8.0.1"})
    assert cfg is not None and cfg.probe == ProbeMethod("tcp", 22)
    assert cfg.probe_address == "10.8.0.1" and cfg.probe_interval_s == 4.0
    wrong: list[dict[str, object]] = [{"probe": "ping"}, {"probe": 1}, {"probeAddress": "x"}]
    for entry in wrong:
        with pytest.raises(ConfigError):
            vpn_config({"kind": "openvpn", **entry})


def test_counters_from_the_uapi_and_the_management_interface():
    assert parse_allowed_ips("public_key=aa\nallowed_ip=10.0.0.1/32\nallowed_ip=fd::1/128\n") == (
        "10.0.0.1/32",
        "fd::1/128",
    )
    status = [
        "OpenVPN STATISTICS",
        "Updated,2026",
        "TUN/TAP read bytes,5",
        "TCP/UDP read bytes,987",
    ]
    assert parse_link_rx(status) == 987
    assert parse_link_rx(["ERROR: unknown command"]) is None


# --- the monitor drives it ------------------------------------------------------------------


class Clock:
    t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Peer:
    """A fake tunnel: counters the test moves, probes answered while `reachable`."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.rx, self.reachable, self.sent = clock, 1000, True, 0

    async def wireguard(self, iface: str) -> WireGuardState:
        return WireGuardState(iface, True, True, self.clock.t - 30, self.rx, 5, 25, None)

    async def openvpn(self, iface: str, management: str | None) -> OpenVPNState:
        return OpenVPNState(True, "CONNECTED", 1.0, "management", rx_bytes=self.rx)

    async def probe(self, method: ProbeMethod, address: str, timeout: float, iface: str):
        self.sent += 1
        assert address == "10.232.7.1" and timeout == 1.0 and iface == "wg0"
        return ProbeResult(self.reachable, "answered" if self.reachable else "no answer")


@pytest.mark.parametrize("kind", ["wireguard", "openvpn"])
async def test_the_monitor_probes_only_when_counters_stand_still(tmp_path, monkeypatch, kind):
    from agent.connectivity import openvpn, wireguard

    clock = Clock()
    peer = Peer(clock)
    monkeypatch.setattr(wireguard, "probe", peer.wireguard)
    monkeypatch.setattr(openvpn, "probe", peer.openvpn)
    vpn = {"kind": kind, "interface": "wg0", "probeInterval": 1}
    mon = ConnectivityMonitor(
        vpn_config(vpn), StatusBoard(Store(tmp_path), clock=clock), "http://127.0.0.1:9",
        lambda: 60.0, lambda: False, clock=clock, monotonic=clock,
    )  # fmt: skip
    mon.cloudlink.send_probe = peer.probe
    mon.cloudlink.iface_ipv4 = lambda iface: ("10.232.7.2", 24)

    async def tick(dt: float = 1.0) -> bool:
        clock.t += dt
        return (await mon.probe_once()).cloudlink.ok

    assert (await tick()) and peer.sent == 1  # first look: one probe
    for _ in range(5):  # busy tunnel: rx grows every look, no packet
        peer.rx += 300
        assert await tick()
    assert peer.sent == 1
    peer.reachable = False  # blocked: rx stands still, so the next look asks
    assert not (await tick()) and peer.sent == 2
    assert not (await tick(0.3)) and peer.sent == 2  # a poke: no second packet within the period
    assert not (await tick(0.7)) and peer.sent == 3
    view = (await mon.probe_once()).cloudlink
    assert "no answer" in view.detail and peer.sent == 3
    peer.reachable = True
    assert (await tick()) and peer.sent == 4
    assert mon.cloudlink.packets == 4


async def test_a_probe_socket_that_cannot_be_opened_is_an_unanswered_probe(monkeypatch):
    import socket

    from agent.connectivity import probe

    real = socket.socket

    def no_inet_sockets(family: int = -1, *args: object, **kwargs: object) -> object:
        if family == socket.AF_INET:
            raise OSError(24, "Too many open files")
        return real(family, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "socket", no_inet_sockets)  # what probe.py opens its sockets with
    result = await probe.send_probe(ProbeMethod("icmp"), "10.0.0.1", 1.0, "wg0")
    assert result == ProbeResult(False, "probe to 10.0.0.1: Too many open files")
