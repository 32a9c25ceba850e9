"""One cloudlink verdict (issue 15 point 5): the monitor's status and `device-agent diagnose`
(without a running agent to ask) judge the tunnel by the same code, so they agree on the first
look whatever the tunnel shows. They used to differ: diagnose judged WireGuard by the handshake
age alone, so a blocked tunnel with a fresh handshake read OK there and DOWN in the status."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import diagnostics
from agent.connectivity import cloudlink as cloudlink_mod
from agent.connectivity import openvpn, wireguard
from agent.connectivity.cloudlink import BLOCKED_HINT, Cloudlink, VpnKind, vpn_config
from agent.connectivity.monitor import ConnectivityMonitor
from agent.connectivity.openvpn import OpenVPNState
from agent.connectivity.probe import ProbeResult
from agent.connectivity.wireguard import WireGuardState
from agent.errors import ConfigError
from agent.status.board import StatusBoard
from agent.store import Store

NOW = 1_700_000_000.0


class Tunnel:
    """What the tunnel shows to one look: its state and whether a probe gets an answer."""

    def __init__(self, wg: WireGuardState, ovpn: OpenVPNState, answers: bool) -> None:
        self.wg, self.ovpn, self.answers = wg, ovpn, answers

    async def wireguard(self, iface: str) -> WireGuardState:
        return self.wg

    async def openvpn(self, iface: str, management: str | None) -> OpenVPNState:
        return self.ovpn

    async def probe(self, method: Any, address: str, timeout: float, iface: str) -> ProbeResult:
        return ProbeResult(self.answers, "answered" if self.answers else "no answer to ICMP echo")


def install(monkeypatch: pytest.MonkeyPatch, tunnel: Tunnel, own: tuple[str, int] | None) -> None:
    monkeypatch.setattr(wireguard, "probe", tunnel.wireguard)
    monkeypatch.setattr(openvpn, "probe", tunnel.openvpn)
    monkeypatch.setattr(cloudlink_mod, "send_probe", tunnel.probe)
    monkeypatch.setattr(cloudlink_mod, "iface_ipv4", lambda iface: own)
    monkeypatch.setattr(diagnostics, "_agent_view", lambda config: None)  # no agent answers
    # diagnose's look, on the test's clock
    monkeypatch.setattr(diagnostics, "Cloudlink", lambda vpn: Cloudlink(vpn, clock=lambda: NOW))


async def monitor_says(tmp_path: Any, raw_vpn: dict[str, Any]) -> tuple[bool, str]:
    board = StatusBoard(Store(tmp_path), clock=lambda: NOW)
    mon = ConnectivityMonitor(
        vpn_config(raw_vpn), board, "http://127.0.0.1:9", lambda: 60.0, lambda: False,
        clock=lambda: NOW,
    )  # fmt: skip
    view = (await mon.probe_once()).cloudlink
    return view.ok, view.detail


async def diagnose_says(raw_vpn: dict[str, Any]) -> tuple[bool, str]:
    check = await diagnostics.check_cloudlink(SimpleNamespace(extra={"vpn": raw_vpn}))  # type: ignore[arg-type]
    return check.ok, check.detail


def wg_state(**changes: Any) -> WireGuardState:
    base: dict[str, Any] = dict(
        iface="wg0", exists=True, up=True, last_handshake=NOW - 20, rx_bytes=500, tx_bytes=9,
        keepalive_s=25, error=None, allowed_ips=("10.232.7.1/32",),
    )  # fmt: skip
    return WireGuardState(**{**base, **changes})


OVPN_UP = OpenVPNState(True, "CONNECTED", NOW - 50, "management", rx_bytes=700)


async def test_a_blocked_wireguard_tunnel_with_a_fresh_handshake_is_down_in_both(
    tmp_path, monkeypatch
):
    install(monkeypatch, Tunnel(wg_state(), OVPN_UP, answers=False), own=None)
    vpn = {"kind": "wireguard"}
    said = await monitor_says(tmp_path, vpn)
    assert said == (await diagnose_says(vpn))
    assert said[0] is False and "no answer to ICMP echo" in said[1]
    line = diagnostics.verdict(
        [diagnostics.Check("cloudlink", *said, {"enabled": True, "kind": "wireguard"})]
    )
    assert line.endswith(BLOCKED_HINT[VpnKind.WIREGUARD])


handshakes = st.one_of(st.none(), st.floats(0, 400).map(lambda age: NOW - age))
wireguard_states = st.builds(
    wg_state,
    exists=st.booleans(),
    up=st.booleans(),
    last_handshake=handshakes,
    keepalive_s=st.sampled_from([0, 1, 25]),
    error=st.sampled_from([None, "no interface wg0", "UAPI errno 1"]),
    allowed_ips=st.sampled_from([(), ("10.232.7.1/32",), ("0.0.0.0/0",)]),
)
openvpn_states = st.builds(
    OpenVPNState,
    connected=st.booleans(),
    state=st.sampled_from(["CONNECTED", "RECONNECTING", "UNREACHABLE"]),
    since=st.sampled_from([None, NOW - 50]),
    source=st.sampled_from(["management", "status-file"]),
    error=st.sampled_from([None, "management 127.0.0.1:7505: refused"]),
    rx_bytes=st.sampled_from([None, 0, 700]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(list(VpnKind)),
    wg=wireguard_states,
    ovpn=openvpn_states,
    answers=st.booleans(),
    own=st.sampled_from([None, ("10.232.7.2", 24), ("10.232.7.1", 24)]),
    probe_address=st.sampled_from([None, "10.232.7.1"]),
)
async def test_the_status_and_diagnose_agree_on_the_first_look(
    tmp_path, monkeypatch, kind, wg, ovpn, answers, own, probe_address
):
    with monkeypatch.context() as patch:
        install(patch, Tunnel(wg, ovpn, answers), own)
        vpn: dict[str, Any] = {"kind": kind.value}
        if probe_address:
            vpn["probeAddress"] = probe_address
        assert (await monitor_says(tmp_path, vpn)) == (await diagnose_says(vpn))


def test_every_vpn_kind_has_a_probe_an_interface_and_a_hint():
    probes = Cloudlink(None).probes
    assert set(probes) == set(VpnKind) == set(cloudlink_mod.DEFAULT_INTERFACE)
    assert set(BLOCKED_HINT) == set(VpnKind)
    assert [k.value for k in VpnKind] == ["wireguard", "openvpn"]  # config.json's spelling


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "kind": st.sampled_from(["wireguard", "openvpn", "ipsec", "", "WireGuard"])
            | json_values,
            "interface": st.sampled_from(["wg0", "tun1", ""]) | json_values,
            "management": st.sampled_from(["127.0.0.1:7505", "localhost"]) | json_values,
            "probeInterval": st.sampled_from([0.1, 1, 4.0, True]) | json_values,
            "probe": st.sampled_from(["icmp", "tcp:9", "tcp:0", "udp:1"]) | json_values,
            "probeAddress": st.sampled_from(["10.0.0.1", "::1"]) | json_values,
        },
    )
)
def test_any_vpn_config_is_a_known_kind_or_a_clear_error(raw):
    try:
        vpn = vpn_config(raw)
    except ConfigError as exc:
        assert str(exc).startswith("'vpn")
        return
    assert vpn is not None and vpn.kind in VpnKind and raw["kind"] == vpn.kind.value
    assert vpn.interface == raw.get("interface", cloudlink_mod.DEFAULT_INTERFACE[vpn.kind])
