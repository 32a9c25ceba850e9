import pytest

from agent.connectivity.monitor import ConnectivityMonitor, vpn_config
from agent.connectivity.openvpn import parse_state
from agent.connectivity.wireguard import WireGuardState, parse_uapi
from agent.errors import ConfigError
from agent.model.device_status import DeviceStatus
from agent.status.board import StatusBoard
from agent.store import Store

UAPI = """private_key=aa
listen_port=51820
public_key=bb
endpoint=10.231.1.1:51820
last_handshake_time_sec=1700000000
last_handshake_time_nsec=500000000
rx_bytes=1000
tx_bytes=2000
persistent_keepalive_interval=25
public_key=cc
last_handshake_time_sec=0
last_handshake_time_nsec=0
rx_bytes=5
tx_bytes=7
errno=0

"""


def test_uapi_answer_sums_peers_and_keeps_the_newest_handshake():
    newest, rx, tx, keepalive, error = parse_uapi(UAPI)
    assert newest == 1700000000.5
    assert (rx, tx, keepalive, error) == (1005, 2007, 25, None)
    assert parse_uapi("errno=2\n\n")[4] == "UAPI errno 2"


def test_openvpn_state_is_the_latest_line():
    lines = [
        "1700000000,CONNECTING,,,,,,",
        "1700000005,CONNECTED,SUCCESS,10.8.0.6,10.231.1.1,1194,,",
    ]
    assert parse_state(lines) == ("CONNECTED", 1700000005.0)
    assert parse_state([]) == ("UNKNOWN", None)


def test_vpn_config_validation():
    assert vpn_config(None) is None
    cfg = vpn_config({"kind": "openvpn", "management": "127.0.0.1:7505"})
    assert cfg is not None and cfg.interface == "tun0" and cfg.management == "127.0.0.1:7505"
    for bad in (
        {"kind": "ipsec"},
        {"kind": "wireguard", "probeInterval": 0},
        {"kind": "openvpn", "management": "localhost"},
        "wg0",
    ):
        with pytest.raises(ConfigError):
            vpn_config(bad)


class Clock:
    t = 1_700_000_100.0

    def __call__(self):
        return self.t


def monitor(tmp_path, clock, vpn=None):
    board = StatusBoard(Store(tmp_path), clock=clock)
    mon = ConnectivityMonitor(
        vpn_config(vpn), board, "http://127.0.0.1:9", lambda: 60.0, lambda: False, clock=clock
    )
    return mon, board


def wg(handshake, rx, up=True, keepalive=1):
    return WireGuardState("wgd0", True, up, handshake, rx, 10, keepalive)


def test_wireguard_needs_a_recent_handshake_and_moving_bytes(tmp_path):
    clock = Clock()
    mon, _ = monitor(tmp_path, clock, {"kind": "wireguard", "interface": "wgd0"})
    assert mon.cloudlink.judge_wireguard(wg(clock.t - 5, 100)).ok
    clock.t += 10
    # nothing arrived between probes yet: no usual rhythm known, the handshake age decides
    assert mon.cloudlink.judge_wireguard(wg(clock.t - 15, 100)).ok
    for rx in (120, 140, 160):  # the peer talks every second
        clock.t += 1
        assert mon.cloudlink.judge_wireguard(wg(clock.t - 1, rx)).ok
    clock.t += 2
    assert mon.cloudlink.judge_wireguard(wg(clock.t - 3, 160)).ok  # quiet 2 s: within 3 s
    clock.t += 5
    stalled = mon.cloudlink.judge_wireguard(wg(clock.t - 8, 160))
    assert not stalled.ok and "nothing received" in stalled.detail
    assert mon.cloudlink.judge_wireguard(wg(clock.t - 1, 180)).ok  # bytes again
    clock.t += 400
    old = mon.cloudlink.judge_wireguard(wg(clock.t - 312, 180, keepalive=0))
    assert not old.ok and old.detail == "no WireGuard handshake for 312 s"
    assert not mon.cloudlink.judge_wireguard(wg(clock.t, 200, up=False)).ok


def test_a_peer_that_only_answers_handshakes_is_not_called_silent(tmp_path):
    clock = Clock()
    mon, _ = monitor(tmp_path, clock, {"kind": "wireguard", "interface": "wgd0"})
    rx = 100
    for _ in range(4):  # rx moves only at each 2-minute re-handshake
        for _ in range(12):
            clock.t += 10
            assert mon.cloudlink.judge_wireguard(wg(clock.t - 60, rx, keepalive=25)).ok
        rx += 92


async def test_device_status_from_polls_without_a_vpn(tmp_path):
    clock = Clock()
    mon, board = monitor(tmp_path, clock)
    view = await mon.probe_once()
    assert view.view.status is DeviceStatus.DISCONNECTED  # no poll yet, cloudlink disabled
    board.mark_poll(True)
    assert (await mon.probe_once()).view.status is DeviceStatus.OPERATIONAL
    board.mark_poll(False, "fetch target state: timed out")
    view = await mon.probe_once()
    assert view.view.status is DeviceStatus.DISCONNECTED
    assert "timed out" in view.view.reason
