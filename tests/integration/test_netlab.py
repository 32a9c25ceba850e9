"""The network lab and the devcloud's side of cloudlink, with real namespaces, real wireguard-go
and real openvpn. Needs root; a missing binary fails (never skips).

Detection times (a cut → the devcloud's status changes) are printed (`-s`) as
`netlab_detection what=… seconds=…`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.connectivity import probe as probe_mod
from agent.connectivity.probe import ProbeMethod, ProbeResult, iface_ipv4, send_probe
from devcloud.client import DevCloudClient
from testbed import TestbedError
from testbed._util import cmdline
from testbed.netns import NetLab, OpenVPNLink, WireGuardLink
from testbed.processes import DevCloudProcess

pytestmark = pytest.mark.integration

UUID, KEY = "d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f", "netlab-device-key"
POLL_MS = 4000  # heartbeat window 6 s: longer than the cloudlink's 3 s (keepalive 1 s)


def leftovers(lab: NetLab) -> list[str]:
    """Anything of `lab` still alive: namespaces, UAPI sockets, processes naming it."""
    found = [ns for ns in (lab.cloud_ns, lab.device_ns) if Path(f"/run/netns/{ns}").exists()]
    found += [str(p) for p in Path("/var/run/wireguard").glob(f"*{lab.id}.sock")]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(lab.id in arg for arg in cmdline(int(entry.name))):
            found.append(f"pid {entry.name}: {' '.join(cmdline(int(entry.name)))}")
    return found


@pytest.fixture(scope="module", autouse=True)
def _no_stale_labs() -> None:
    try:
        NetLab.purge_stale()
    except TestbedError as exc:
        pytest.fail(f"netlab: {exc}", pytrace=False)


@pytest.fixture
def lab() -> Iterator[NetLab]:
    try:
        started = time.monotonic()
        lab = NetLab()
    except TestbedError as exc:  # TestbedUnavailable included: fail, never skip
        pytest.fail(f"netlab unavailable: {exc}", pytrace=False)
    print(f"netlab_timing what=setup seconds={time.monotonic() - started:.3f}")
    try:
        yield lab
    finally:
        started = time.monotonic()
        lab.stop()
        print(f"netlab_timing what=teardown seconds={time.monotonic() - started:.3f}")
        assert leftovers(lab) == []


def wait_until(what: str, timeout: float, check: Callable[[], bool]) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"not within {timeout} s: {what}")


def test_lab_joins_two_namespaces_and_cleans_up(lab: NetLab) -> None:
    assert lab.run("device", ["ping", "-c1", "-W2", lab.cloud_ip]).returncode == 0
    assert lab.ns_cmd("cloud", ["true"]) == ["ip", "netns", "exec", lab.cloud_ns, "true"]
    with NetLab() as other:  # a concurrent lab: its own names and subnet
        assert other.subnet != lab.subnet and other.id != lab.id
        assert other.run("device", ["ping", "-c1", "-W2", other.cloud_ip]).returncode == 0
    assert leftovers(other) == []
    other.stop()  # idempotent
    lab.cut_all("device")
    assert lab.run("device", ["ping", "-c1", "-W1", lab.cloud_ip], check=False).returncode != 0
    lab.restore("device")
    assert lab.run("device", ["ping", "-c1", "-W2", lab.cloud_ip]).returncode == 0


def test_wireguard_handshake_seen_in_both_namespaces(lab: NetLab) -> None:
    started = time.monotonic()
    wg = WireGuardLink(lab, keepalive_s=1)
    print(f"netlab_timing what=wireguard_up seconds={time.monotonic() - started:.3f}")
    assert lab.run("device", ["ping", "-c1", "-W2", wg.cloud_tunnel_ip]).returncode == 0
    for ns, iface in (("cloud", wg.cloud_iface), ("device", wg.device_iface)):
        (peer_line,) = lab.run(ns, ["wg", "show", iface, "dump"]).stdout.splitlines()[1:]
        assert int(peer_line.split("\t")[4]) > time.time() - 30  # latest handshake
    assert wg.peer("cloud").public_key == wg.device_public_key
    assert wg.peer("device").keepalive_s == 1


def test_dropping_the_wireguard_port_stops_rx_on_the_cloud_side(lab: NetLab) -> None:
    wg = WireGuardLink(lab, keepalive_s=1)
    rx = wg.peer("cloud").rx_bytes
    wait_until("keepalives arrive", 5, lambda: wg.peer("cloud").rx_bytes > rx)
    lab.drop("device", proto="udp", dport=wg.cloud_port)
    time.sleep(0.5)  # a keepalive already on its way may still land
    frozen = wg.peer("cloud").rx_bytes
    time.sleep(3)  # the point: nothing gets through for 3 s (keepalives every 1 s)
    assert wg.peer("cloud").rx_bytes == frozen
    lab.restore("device")
    wait_until("rx moves again", 5, lambda: wg.peer("cloud").rx_bytes > frozen)


def test_tunnel_probe_is_answered_through_the_tunnel_and_not_when_blocked(
    lab: NetLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's probe (agent/connectivity/probe.py) from the device namespace to the cloud
    end's tunnel address: an ICMP echo, or a TCP SYN answered by a RST, proves the tunnel; a
    firewall dropping the tunnel's UDP leaves both unanswered."""
    wg = WireGuardLink(lab, keepalive_s=1)
    assert lab.call_in("device", lambda: iface_ipv4(wg.device_iface)) == (wg.device_tunnel_ip, 30)
    icmp, tcp = ProbeMethod("icmp"), ProbeMethod("tcp", 9)

    def probe(method: ProbeMethod) -> ProbeResult:
        return lab.call_in(
            "device",
            lambda: asyncio.run(send_probe(method, wg.cloud_tunnel_ip, 1.0, wg.device_iface)),
        )

    assert probe(icmp) == ProbeResult(True, f"ICMP echo to {wg.cloud_tunnel_ip} answered")
    assert probe(tcp).ok and "RST" in probe(tcp).detail
    lab.drop("device", proto="udp", dport=wg.cloud_port)
    for method in (icmp, tcp):
        result = probe(method)
        assert not result.ok and result.detail.startswith("no answer"), result
    lab.restore("device")
    wait_until("the tunnel answers again", 10, lambda: probe(icmp).ok)

    # without raw-socket privileges: an unprivileged ICMP socket where the namespace's
    # ping_group_range lets the agent in, else the TCP connect
    monkeypatch.setattr(probe_mod, "ICMP_SOCKETS", ((socket.SOCK_DGRAM, False),))
    lab.run("device", ["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
    assert probe(icmp) == ProbeResult(True, f"ICMP echo to {wg.cloud_tunnel_ip} answered")
    lab.run("device", ["sysctl", "-qw", "net.ipv4.ping_group_range=1 0"])
    assert probe(icmp).ok and "RST" in probe(icmp).detail
    monkeypatch.setattr(probe_mod, "ICMP_SOCKETS", ())
    assert probe(icmp).ok and "RST" in probe(icmp).detail


def test_openvpn_connected_via_management(lab: NetLab) -> None:
    started = time.monotonic()
    ovpn = OpenVPNLink(lab, "netlab-device")
    print(f"netlab_timing what=openvpn_up seconds={time.monotonic() - started:.3f}")
    assert ovpn.device_management == "127.0.0.1:7505"
    assert ovpn.state() == "CONNECTED"
    assert lab.run("device", ["ping", "-c1", "-W2", ovpn.cloud_tunnel_ip]).returncode == 0
    assert lab.run("device", ["ip", "link", "show", ovpn.device_iface]).returncode == 0
    wait_until(
        "the CN in the server's status file",
        5,
        lambda: "CLIENT_LIST,netlab-device," in ovpn.server_status_path.read_text(),
    )


# -- the devcloud in the cloud namespace ------------------------------------------------------


class Poller:
    """Target-state polls from the device namespace every POLL_MS, like an agent."""

    def __init__(self, lab: NetLab, url: str) -> None:
        self.lab, self.url = lab, url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        url = f"{self.url}/device/v3/{UUID}/state"
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # cut: the next poll tries again
                self.lab.http("device", "GET", url, headers=headers, timeout=1.5)
            self._stop.wait(POLL_MS / 1000)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def cloud_proc(lab: NetLab) -> Iterator[Callable[..., DevCloudProcess]]:
    procs: list[DevCloudProcess] = []

    def start(*extra: str) -> DevCloudProcess:
        proc = DevCloudProcess(lab.root / "devcloud")
        proc.host = lab.cloud_ip
        proc.command_prefix = lab.ns_cmd("cloud", [])
        proc.extra_args = ["--poll-interval-ms", str(POLL_MS), *extra]
        procs.append(proc)
        return proc.start()

    yield start
    for proc in procs:
        proc.stop()


def status_of(lab: NetLab, client: DevCloudClient) -> dict[str, Any]:
    return lab.call_in("cloud", lambda: client.connectivity(UUID))


def expect(lab: NetLab, client: DevCloudClient, what: str, status: str, legacy: str) -> float:
    """Seconds until the devcloud shows `status`/`legacy`; printed as a detection time."""

    def shown() -> bool:
        view = status_of(lab, client)
        return (view["status"], view["legacy_status"]) == (status, legacy)

    seconds = wait_until(f"{what}: {status} / {legacy}", 20, shown)
    print(f"netlab_detection what={what} seconds={seconds:.2f}")
    return seconds


def test_devcloud_judges_wireguard_and_heartbeat_from_the_cloud_namespace(
    lab: NetLab, cloud_proc: Callable[..., DevCloudProcess]
) -> None:
    wg = WireGuardLink(lab, keepalive_s=1)
    proc = cloud_proc("--wg-interface", wg.cloud_iface)
    client = proc.client()
    vpn = {"kind": "wireguard", "public_key": wg.device_public_key, "keepalive_s": 1}
    lab.call_in("cloud", lambda: client.register(UUID, KEY, "lab-device", vpn=vpn))
    poller = Poller(lab, proc.url)
    try:
        expect(lab, client, "start", "Operational", "Online")
        view = status_of(lab, client)
        assert view["heartbeat"]["ok"] and view["cloudlink"]["kind"] == "wireguard"
        assert view["cloudlink"]["last_handshake"] is not None

        lab.drop("device", proto="udp", dport=wg.cloud_port)  # the tunnel's traffic
        took = expect(lab, client, "wg_blocked", "Reduced Functionality", "Online (Heartbeat only)")
        assert took < 3 * 1 + 2 * 1 + 1  # the rx window plus two samples
        lab.restore("device")
        expect(lab, client, "wg_restored", "Operational", "Online")
    finally:
        poller.stop()
    took = expect(lab, client, "polls_stopped", "Reduced Functionality", "Online (VPN only)")
    assert took < 1.5 * POLL_MS / 1000 + 1.5

    poller = Poller(lab, proc.url)
    try:
        expect(lab, client, "polls_resumed", "Operational", "Online")
        before = status_of(lab, client)["heartbeat"]["last"]  # cut right after a poll
        wait_until("a poll", 10, lambda: status_of(lab, client)["heartbeat"]["last"] != before)
        cut_at = time.time()
        lab.cut_all("device")
        expect(lab, client, "all_cut", "Disconnected", "Offline")
        last_poll = status_of(lab, client)["heartbeat"]["last"]
        lab.restore("device")
        expect(lab, client, "all_restored", "Operational", "Online")
    finally:
        poller.stop()
    # cloudlink goes first (3 s without rx); the heartbeat stays green until 1.5 poll intervals
    # after the last poll, then Disconnected — as the product page says
    history = lab.call_in("cloud", lambda: client.device(UUID, since=cut_at))["status_history"]
    assert [(h["status"], h["legacy_status"]) for h in history[:2]] == [
        ("Reduced Functionality", "Online (Heartbeat only)"),
        ("Disconnected", "Offline"),
    ]  # then, restored, the tunnel is back before the next poll: VPN only, then Operational
    green_for = history[1]["t"] - datetime.fromisoformat(last_poll).timestamp()
    print(f"netlab_detection what=heartbeat_green_after_last_poll seconds={green_for:.2f}")
    assert 1.5 * POLL_MS / 1000 <= green_for < 1.5 * POLL_MS / 1000 + 1.5
    log = proc.log_path.read_text()
    assert f'device_status_changed uuid={UUID} status="Disconnected" legacy="Offline"' in log


def test_devcloud_judges_openvpn_from_the_server_status_file(
    lab: NetLab, cloud_proc: Callable[..., DevCloudProcess]
) -> None:
    ovpn = OpenVPNLink(lab, "lab-device-cn")
    proc = cloud_proc("--openvpn-status", str(ovpn.server_status_path))
    client = proc.client()
    vpn = {"kind": "openvpn", "common_name": "lab-device-cn"}
    lab.call_in("cloud", lambda: client.register(UUID, KEY, "lab-device", vpn=vpn))
    poller = Poller(lab, proc.url)
    try:
        expect(lab, client, "ovpn_start", "Operational", "Online")
        lab.drop("device", proto="udp", dport=ovpn.cloud_port)
        took = expect(
            lab, client, "ovpn_blocked", "Reduced Functionality", "Online (Heartbeat only)"
        )
        # the server's ping-restart (2 × 3 s), ~3 s until it drops the restarting instance
        # from its status file, one status write, a sample
        assert took < 2 * 3 + 3 + 1 + 2
        lab.restore("device")
        expect(lab, client, "ovpn_restored", "Operational", "Online")
        assert ovpn.state() == "CONNECTED"
    finally:
        poller.stop()
