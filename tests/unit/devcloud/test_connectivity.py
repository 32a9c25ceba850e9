"""The devcloud's side of the device status: heartbeat from poll times, cloudlink from its own
tunnel endpoint (fake `wg show dump` and OpenVPN status text), a fake clock throughout."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from devcloud.connectivity import Connectivity
from devcloud.state import AppUpdateStatus, Cloud, Device, Vpn
from devcloud.tunnels import parse_openvpn_status, parse_wg_dump

T0 = 1_800_000_000.0
WG_KEY = "DEVpub+key/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
OTHER_KEY = "OTHERpub/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="
IFACE_LINE = "cloudPRIVATE=\tcloudPUBLIC=\t51820\toff"


def peer_line(key: str, handshake: float, rx: int, keepalive: str = "off") -> str:
    fields = [key, "(none)", "10.231.1.2:40000", "10.232.1.2/32", str(int(handshake)), str(rx)]
    return "\t".join([*fields, "92", keepalive])


def dump(handshake: float, rx: int, key: str = WG_KEY) -> str:
    return "\n".join([IFACE_LINE, peer_line(key, handshake, rx)]) + "\n"


def ovpn_status(written: float, *names: str) -> str:
    lines = [
        "TITLE,OpenVPN 2.6.14 x86_64-pc-linux-gnu",
        f"TIME,2027-01-15 08:00:00,{int(written)}",
        "HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,"
        "Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,"
        "Peer ID,Data Channel Cipher",
        *(
            f"CLIENT_LIST,{n},10.231.1.2:34552,10.233.1.2,,2137,2127,2027-01-15 07:59:00,"
            f"{int(T0)},UNDEF,0,0,AES-256-GCM"
            for n in names
        ),
        "GLOBAL_STATS,dco_enabled,0",
        "END",
    ]
    return "\n".join(lines) + "\n"


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def setup(
    clock: Clock,
    vpn: Vpn | None,
    *,
    wg_interface: str | None = None,
    openvpn_status: Path | None = None,
    poll_interval_ms: int | None = None,
) -> tuple[Connectivity, Device]:
    cloud = Cloud()
    device = cloud.register("u1", "k1", "dev-one", vpn)
    conn = Connectivity(
        cloud,
        wg_interface=wg_interface,
        openvpn_status=openvpn_status,
        poll_interval_ms=poll_interval_ms,
        clock=clock,
    )
    return conn, device


def wg_setup(clock: Clock, keepalive: int = 1) -> tuple[Connectivity, Device]:
    vpn = Vpn("wireguard", public_key=WG_KEY, keepalive_s=keepalive)
    return setup(clock, vpn, wg_interface="wgc01", poll_interval_ms=10_000)


def feed(conn: Connectivity, text: str, at: float | None = None) -> None:
    """One `wg show dump` sample, taken now (or `at`)."""
    assert conn.wg is not None
    conn.wg.update(text, conn.clock() if at is None else at)


def read_status(conn: Connectivity) -> None:
    assert conn.ovpn is not None
    conn.ovpn.read()


def poll(conn: Connectivity, device: Device, status: int = 200) -> None:
    conn.cloud.record_poll(device, status, conn.clock())


def test_parse_wg_dump_reads_peers_and_skips_the_interface_line() -> None:
    text = dump(T0, 340) + "wgc01\t" + peer_line(OTHER_KEY, 0, 0, "25") + "\n"
    first, second = parse_wg_dump(text)
    assert (first.public_key, first.latest_handshake, first.rx_bytes) == (WG_KEY, T0, 340)
    assert first.endpoint == "10.231.1.2:40000" and first.keepalive_s is None
    assert second.latest_handshake is None and second.keepalive_s == 25


def test_parse_openvpn_status() -> None:
    status = parse_openvpn_status(ovpn_status(T0 + 5, "dev-cn", "other"))
    assert status.written_at == T0 + 5
    assert set(status.clients) == {"dev-cn", "other"}
    client = status.clients["dev-cn"]
    assert (client.virtual_address, client.bytes_received, client.connected_since) == (
        "10.233.1.2",
        2137,
        T0,
    )


def test_never_seen_device_is_post_provisioning(clock: Clock) -> None:
    conn, device = wg_setup(clock)
    assert conn.of(device).to_json()["status"] == "Inactive"


def test_polls_and_a_live_wireguard_peer_are_operational(clock: Clock) -> None:
    conn, device = wg_setup(clock)
    feed(conn, dump(T0 - 1, 300))
    poll(conn, device)
    out = conn.of(device).to_json()
    assert (out["status"], out["legacy_status"]) == ("Operational", "Online")
    assert out["heartbeat"] == {
        "ok": True,
        "last": "2027-01-15T08:00:00.000Z",
        "interval_ms": 10_000,
    }
    assert out["cloudlink"] == {
        "ok": True,
        "enabled": True,
        "kind": "wireguard",
        "last_handshake": "2027-01-15T07:59:59.000Z",
    }
    assert out["reason"] == "heartbeat and cloudlink up"


def test_rx_that_stops_moving_takes_cloudlink_down_after_three_keepalives(clock: Clock) -> None:
    conn, device = wg_setup(clock, keepalive=1)
    for rx in (300, 332, 364):  # keepalives arrive
        clock.t += 1
        feed(conn, dump(T0, rx))
        poll(conn, device)
    moved_at = clock.t
    for _ in range(4):  # dropped: the counter stays put
        clock.t += 1
        feed(conn, dump(T0, 364))
        poll(conn, device)
        ok = conn.of(device).cloudlink.ok
        assert ok == (clock.t - moved_at <= 3.0)
    out = conn.of(device).to_json()
    assert (out["status"], out["legacy_status"]) == (
        "Reduced Functionality",
        "Online (Heartbeat only)",
    )
    assert "no WireGuard traffic from the peer for 4.0 s" in out["reason"]


def test_default_keepalive_is_25_s_so_rx_may_rest_75_s(clock: Clock) -> None:
    vpn = Vpn.from_json({"kind": "wireguard", "public_key": WG_KEY})
    assert vpn.keepalive_s == 25
    conn, device = setup(clock, vpn, wg_interface="wgc01")
    feed(conn, dump(T0, 300))
    clock.t += 74
    feed(conn, dump(T0, 300))
    assert conn.of(device).cloudlink.ok
    clock.t += 2
    feed(conn, dump(T0, 300))
    assert not conn.of(device).cloudlink.ok


def test_handshake_older_than_180_s_plus_keepalive_is_down(clock: Clock) -> None:
    conn, device = wg_setup(clock, keepalive=1)
    feed(conn, dump(T0 - 181.5, 300), at=clock.t - 1)
    feed(conn, dump(T0 - 181.5, 400))
    link = conn.of(device).cloudlink
    assert not link.ok and link.detail == "no WireGuard handshake for 182 s"
    assert link.traffic_seen


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (dump(T0, 300, key=OTHER_KEY), "peer not configured on wgc01"),
        (dump(0, 0), "no WireGuard handshake yet"),
    ],
)
def test_unknown_peer_or_no_handshake(clock: Clock, text: str, detail: str) -> None:
    conn, device = wg_setup(clock)
    feed(conn, text)
    assert conn.of(device).cloudlink.detail == detail


def test_stale_wg_samples_are_not_trusted(clock: Clock) -> None:
    conn, device = wg_setup(clock)
    feed(conn, dump(T0, 300))
    assert conn.wg is not None
    conn.wg.error = "Unable to access interface: No such device"
    clock.t += 6
    link = conn.of(device).cloudlink
    assert not link.ok and "No such device" in link.detail


def test_wireguard_device_without_wg_interface_option(clock: Clock) -> None:
    conn, device = setup(clock, Vpn("wireguard", public_key=WG_KEY))
    assert conn.of(device).cloudlink.detail == "devcloud has no --wg-interface"


def test_heartbeat_stays_green_for_one_and_a_half_intervals(clock: Clock) -> None:
    conn, device = wg_setup(clock)
    feed(conn, dump(T0, 300))
    poll(conn, device)
    clock.t += 14.9
    feed(conn, dump(T0, 300))
    out = conn.of(device).to_json()
    assert out["heartbeat"]["ok"]
    clock.t += 0.2
    out = conn.of(device).to_json()
    assert not out["heartbeat"]["ok"]
    assert out["status"] == "Disconnected"  # cloudlink went quiet too
    assert "no heartbeat: last poll 15 s ago, poll interval 10 s" in out["reason"]


def test_failed_or_unauthorized_polls_are_no_heartbeat(clock: Clock) -> None:
    conn, device = setup(clock, None, poll_interval_ms=10_000)
    poll(conn, device, 500)
    poll(conn, device, 401)
    view = conn.of(device)
    assert not view.heartbeat_ok
    assert view.view.status == "Disconnected"  # it did reach us once: not Inactive


def test_cloudlink_only_when_polls_stop_but_the_tunnel_lives(clock: Clock) -> None:
    conn, device = wg_setup(clock)
    poll(conn, device)
    for step in range(20):
        clock.t += 1
        feed(conn, dump(T0, 300 + 32 * step))
    out = conn.of(device).to_json()
    assert (out["status"], out["legacy_status"]) == (
        "Reduced Functionality",
        "Online (VPN only)",
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, 10_000),
        ({"BALENA_SUPERVISOR_POLL_INTERVAL": "60000"}, 60_000),
        ({"RESIN_SUPERVISOR_POLL_INTERVAL": "30000"}, 30_000),
        ({"BALENA_SUPERVISOR_POLL_INTERVAL": "5000", "RESIN_SUPERVISOR_POLL_INTERVAL": "7"}, 5_000),
        ({"BALENA_SUPERVISOR_POLL_INTERVAL": "soon"}, 10_000),
        ({"BALENA_SUPERVISOR_POLL_INTERVAL": "10"}, 10_000),
    ],
)
def test_poll_interval_from_target_config_else_option(
    clock: Clock, config: dict[str, str], expected: int
) -> None:
    conn, device = setup(clock, None, poll_interval_ms=10_000)
    conn.cloud.set_target("u1", {"name": "dev-one", "config": config, "apps": {}})
    assert conn.interval_ms(device) == expected


def test_default_interval_is_900000(clock: Clock) -> None:
    conn, device = setup(clock, None)
    assert conn.interval_ms(device) == 900_000


def test_cloudlink_disabled_is_operational_on_heartbeat(clock: Clock) -> None:
    conn, device = setup(clock, None, poll_interval_ms=10_000)
    poll(conn, device)
    out = conn.of(device).to_json()
    assert out["status"] == "Operational"
    assert out["cloudlink"] == {"ok": False, "enabled": False, "kind": None, "last_handshake": None}
    assert "cloudlink disabled" in out["reason"]


def test_openvpn_common_name_in_a_fresh_status_file(clock: Clock, tmp_path: Path) -> None:
    path = tmp_path / "status"
    conn, device = setup(
        clock, Vpn("openvpn", common_name="dev-cn"), openvpn_status=path, poll_interval_ms=10_000
    )
    poll(conn, device)
    assert conn.of(device).cloudlink.detail == "no status file yet"
    read_status(conn)
    assert "No such file" in conn.of(device).cloudlink.detail

    path.write_text(ovpn_status(T0 - 1, "other", "dev-cn"))
    read_status(conn)
    out = conn.of(device).to_json()
    assert out["status"] == "Operational"
    assert out["cloudlink"]["kind"] == "openvpn"
    assert out["cloudlink"]["last_handshake"] == "2027-01-15T08:00:00.000Z"  # connected since

    path.write_text(ovpn_status(T0, "other"))  # the server dropped it
    read_status(conn)
    assert conn.of(device).cloudlink.detail == "dev-cn not connected to the OpenVPN server"

    path.write_text(ovpn_status(T0, "dev-cn"))
    read_status(conn)
    path.write_text("TITLE,OpenVPN\nTIME,x,1\n")  # caught mid-rewrite: no END, ignored
    read_status(conn)
    assert conn.of(device).cloudlink.ok
    clock.t += 5.5  # the server stopped writing it
    assert "status file not updated for 5.5 s" in conn.of(device).cloudlink.detail


def test_an_update_in_progress_shows_updating(clock: Clock) -> None:
    conn, device = setup(clock, None, poll_interval_ms=10_000)
    poll(conn, device)
    device.apps_update_status["a1"] = AppUpdateStatus("r1", "downloading", T0 - 60)
    device.apps_update_status["a2"] = AppUpdateStatus("r2", "done", T0 - 30)
    out = conn.of(device).to_json()
    assert out["status"] == "Updating"
    assert out["update_status"] == "downloading"
    assert out["update_status_since"] == "2027-01-15T07:59:30.000Z"  # the latest change
    device.apps_update_status["a1"] = AppUpdateStatus("r1", "done", T0)
    assert conn.of(device).to_json()["status"] == "Operational"


def test_each_status_change_is_logged_once(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devcloud")
    conn, device = setup(clock, None, poll_interval_ms=10_000)
    assert [c.status for c in conn.check()] == ["Inactive"]
    poll(conn, device)
    clock.t += 1
    assert [c.status for c in conn.check()] == ["Operational"]
    clock.t += 1
    assert conn.check() == []
    clock.t += 20
    assert [c.status for c in conn.check()] == ["Disconnected"]
    lines = [r.getMessage() for r in caplog.records if "device_status_changed" in r.getMessage()]
    assert lines[1] == (
        'device_status_changed uuid=u1 status="Operational" legacy="Online" '
        'reason="heartbeat up (cloudlink disabled)"'
    )
    assert len(lines) == 3
    assert [h["status"] for h in conn.history("u1", since=T0)] == ["Operational", "Disconnected"]
    assert conn.of(device).since == clock.t
