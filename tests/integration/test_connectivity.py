"""Cloudlink and heartbeat end to end, in network namespaces: the devcloud and the tunnel
servers in a "cloud" namespace, the agent in a "device" one, real wireguard-go and openvpn,
iptables as the firewall. Each detection time is printed as `detection what=… side=… s=…`
(run with -s) and recorded in docs/benchmarks.md."""

from __future__ import annotations

import json
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devcloud.client import DevCloudClient
from testbed import PrivateEngine, TestbedError
from testbed.netns import NetLab, OpenVPNLink, WireGuardLink
from testbed.processes import AgentProcess, DevCloudProcess
from tests.helpers import wait_until

POLL_MS = 3000
PROBE_S = 1.0


@dataclass
class Rig:
    lab: NetLab
    cloud: DevCloudClient
    agent: AgentProcess
    uuid: str

    def cloud_view(self) -> dict[str, Any]:
        return self.lab.call_in("cloud", lambda: self.cloud.connectivity(self.uuid))

    def device_view(self) -> dict[str, Any] | None:
        """The agent's own view: its latest `device_status_changed` log line."""
        events = self.agent.events_named("device_status_changed")
        return events[-1] if events else None

    def api_status(self) -> dict[str, Any]:
        """GET /v2/device/status from inside the device namespace, where the agent listens."""
        answer = self.lab.call_in("device", lambda: self.agent.api("GET", "/v2/device/status"))
        assert answer.status == 200, answer.body
        return dict(answer.body)


def until(
    what: str, timeout: float, check: Callable[[], bool], why: Callable[[], str] = lambda: ""
) -> float:
    """Seconds until `check()` held (tests.helpers.wait_until, timed)."""
    started = time.monotonic()
    wait_until(check, timeout, message=lambda: f"{what}\n{why()}")
    return time.monotonic() - started


def detect(rig: Rig, what: str, side: str, status: str, legacy: str, timeout: float = 30) -> float:
    if side == "cloud":

        def shown() -> bool:
            view = rig.cloud_view()
            return (view["status"], view["legacy_status"]) == (status, legacy)
    else:

        def shown() -> bool:
            view = rig.device_view()
            return view is not None and (view["status"], view["legacy_status"]) == (status, legacy)

    def why() -> str:
        seen = [(e["status"], e["reason"]) for e in rig.agent.events_named("device_status_changed")]
        return f"device views: {seen}\nagent log:\n{rig.agent.log_tail(15)}"

    seconds = until(f"{side}: {what} → {status} / {legacy}", timeout, shown, why)
    print(f"detection what={what} side={side} s={seconds:.2f}")
    return seconds


def diagnose(rig: Rig) -> str:
    """`device-agent diagnose --json` run on the device (in its namespace): the verdict."""
    argv = [
        sys.executable,
        "-m",
        "agent",
        "diagnose",
        "--config",
        str(rig.agent.config_path),
        "--json",
    ]
    done = rig.lab.run("device", argv, check=False, timeout=60)
    report = json.loads(done.stdout)
    assert {c["name"] for c in report["checks"]} >= {
        "dns",
        "tcp",
        "clock",
        "engine",
        "cloudlink",
        "locks",
        "heartbeat",
    }
    return str(report["verdict"])


@pytest.fixture
def lab() -> Iterator[NetLab]:
    try:
        NetLab.purge_stale()
        lab = NetLab()
    except TestbedError as exc:
        pytest.fail(f"netlab unavailable: {exc}", pytrace=False)
    try:
        yield lab
    finally:
        lab.stop()


def make_rig(lab: NetLab, engine: PrivateEngine, vpn_link: Any, kind: str) -> Rig:
    proc = DevCloudProcess(lab.root / "devcloud")
    proc.host = lab.cloud_ip
    proc.command_prefix = lab.ns_cmd("cloud", [])
    proc.extra_args = ["--poll-interval-ms", str(POLL_MS)]
    if kind == "wireguard":
        proc.extra_args += ["--wg-interface", vpn_link.cloud_iface]
        cloud_vpn = {
            "kind": "wireguard",
            "public_key": vpn_link.device_public_key,
            "keepalive_s": vpn_link.keepalive_s,
        }
        device_vpn = {
            "kind": "wireguard",
            "interface": vpn_link.device_iface,
            "probeInterval": PROBE_S,
        }
    else:
        proc.extra_args += ["--openvpn-status", str(vpn_link.server_status_path)]
        cloud_vpn = {"kind": "openvpn", "common_name": vpn_link.common_name}
        device_vpn = {
            "kind": "openvpn",
            "interface": vpn_link.device_iface,
            "management": vpn_link.device_management,
            "probeInterval": PROBE_S,
        }
    proc.start()
    lab.on_stop(proc.stop)
    client = proc.client()
    uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
    lab.call_in("cloud", lambda: client.register(uuid, key, "lab-device", vpn=cloud_vpn))
    lab.call_in(
        "cloud", lambda: client.set_target(uuid, {"name": "lab-device", "config": {}, "apps": {}})
    )
    agent = AgentProcess(
        lab.root / "agent",
        uuid=uuid,
        api_key=key,
        api_endpoint=proc.url,
        docker_host=engine.host,
        poll_interval_ms=POLL_MS,
        extra={"vpn": device_vpn, "apiTimeout": 2000},
    )
    agent.command_prefix = lab.ns_cmd("device", [])
    agent.start()
    lab.on_stop(agent.kill)
    return Rig(lab, client, agent, uuid)


def test_wireguard_links_up_down_and_back(lab, engine, clean_engine):
    wg = WireGuardLink(lab, keepalive_s=1)
    rig = make_rig(lab, engine, wg, "wireguard")
    times: dict[str, float] = {}

    detect(rig, "start", "device", "Operational", "Online")
    detect(rig, "start", "cloud", "Operational", "Online")
    status = rig.api_status()["device"]
    assert status["status"] == "Operational" and status["legacy_status"] == "Online"
    assert status["heartbeat"]["ok"] and status["cloudlink"]["ok"]
    assert status["cloudlink"]["kind"] == "wireguard" and status["cloudlink"]["last_handshake"]

    time.sleep(3)  # a few keepalives: the device learns how often the cloud end talks

    # a firewall drops the tunnel's UDP: heartbeat only, on both sides
    lab.drop("device", proto="udp", dport=wg.cloud_port)
    times["tunnel_blocked_device"] = detect(
        rig, "tunnel blocked", "device", "Reduced Functionality", "Online (Heartbeat only)"
    )
    times["tunnel_blocked_cloud"] = detect(
        rig, "tunnel blocked", "cloud", "Reduced Functionality", "Online (Heartbeat only)"
    )
    assert "cloudlink down" in rig.device_view()["reason"]
    verdict = diagnose(rig)
    assert verdict.startswith("heartbeat OK, cloudlink DOWN: nothing received over WireGuard")
    assert verdict.endswith("UDP to the endpoint blocked?"), verdict
    lab.restore("device")
    times["restored_device"] = detect(rig, "restored", "device", "Operational", "Online")
    times["restored_cloud"] = detect(rig, "restored", "cloud", "Operational", "Online")

    # everything cut: the cloud keeps the heartbeat green until the poll interval passes
    lab.cut_all("device")
    cut_at = time.monotonic()
    assert rig.cloud_view()["heartbeat"]["ok"], "the cloud dropped the heartbeat at once"
    detect(rig, "all cut", "cloud", "Disconnected", "Offline")
    times["cut_cloud"] = time.monotonic() - cut_at
    # green until the polling interval (the devcloud allows 1.5 × for jitter) has passed
    last_poll = rig.cloud_view()["heartbeat"]["last"]
    assert last_poll is not None
    detect(rig, "all cut", "device", "Disconnected", "Offline")
    times["cut_device"] = time.monotonic() - cut_at
    lab.restore("device")
    detect(rig, "restored after cut", "device", "Operational", "Online")
    detect(rig, "restored after cut", "cloud", "Operational", "Online")

    # the agent stops, the tunnel stays up: cloudlink only, as the cloud sees it
    rig.agent.stop()
    times["agent_stopped_cloud"] = detect(
        rig, "agent stopped", "cloud", "Reduced Functionality", "Online (VPN only)"
    )
    print("detection_summary " + json.dumps({k: round(v, 2) for k, v in times.items()}))


def test_openvpn_operational_then_heartbeat_only(lab, engine, clean_engine):
    ovpn = OpenVPNLink(lab, "lab-device")
    rig = make_rig(lab, engine, ovpn, "openvpn")
    detect(rig, "start", "device", "Operational", "Online")
    detect(rig, "start", "cloud", "Operational", "Online")
    lab.drop("device", proto="udp", dport=ovpn.cloud_port)
    detect(
        rig,
        "openvpn blocked",
        "device",
        "Reduced Functionality",
        "Online (Heartbeat only)",
        timeout=90,
    )
    detect(
        rig,
        "openvpn blocked",
        "cloud",
        "Reduced Functionality",
        "Online (Heartbeat only)",
        timeout=60,
    )
    assert "OpenVPN" in rig.device_view()["reason"]
    lab.restore("device")
    detect(rig, "openvpn restored", "device", "Operational", "Online", timeout=60)
