"""GET/PATCH /v1/device/host-config against a running agent: the reference's shape, its body
validation, the proxy files balenaOS reads, the update locks, and a clear 503 for the hostname
on a host without systemd-hostnamed: these agents talk to the host for real (no host recorder,
`agent.record_host = False`), pointed at a system bus that isn't there, so the test machine is
never renamed. (With the recorder the hostname is recorded: tests/integration/test_api_keys.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.api_helpers import APP_ID, deploy

NO_BUS = "unix:path=/nonexistent/device-agent-test/system_bus_socket"


def _lock(device) -> Path:
    path = Path(device.agent.lock_dir) / str(APP_ID) / "main" / "updates.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("app lock\n")
    return path


@pytest.fixture
def agent_with_boot(device, images, tmp_path):
    device.agent.env["DBUS_SYSTEM_BUS_ADDRESS"] = NO_BUS
    device.agent.record_host = False
    device.agent.config["hostBootDir"] = str(tmp_path / "boot")
    deploy(device, images)
    return device.agent, tmp_path / "boot" / "system-proxy"


def test_get_and_patch_as_the_reference(device, agent_with_boot):
    agent, proxy_dir = agent_with_boot
    api = agent.api

    got = api("GET", "/v1/device/host-config")
    assert got.status == 200 and got.body == {"network": {"hostname": socket.gethostname()}}

    # the reference's validation: 400 for what it can't read
    for body in (
        {},
        {"network": 1},
        {"network": {"hostname": 5}},
        {"network": {"proxy": "socks5://a:1"}},
        {"network": {"proxy": {"dns": "1.2.3.4"}}},
    ):
        bad = api("PATCH", "/v1/device/host-config", body)
        assert bad.status == 400, (body, bad.body)
        assert bad.body["message"].startswith("Could not parse host config input")
    assert api("PATCH", "/v1/device/host-config", {"network": {}}).body == "OK"
    assert not proxy_dir.exists()

    # the proxy: stored where balenaOS reads it, shown by GET, merged by a partial patch
    proxy = {
        "type": "http-connect",
        "ip": "proxy.example",
        "port": 3128,
        "login": "user",
        "password": "secret",
        "dns": "9.9.9.9:53",
        "noProxy": ["10.0.0.0/8", "example.org"],
    }
    done = api("PATCH", "/v1/device/host-config", {"network": {"proxy": proxy}})
    assert done.status == 200 and done.body == "OK"
    conf = (proxy_dir / "redsocks.conf").read_text()
    assert "redsocks {" in conf and "\tip = proxy.example;" in conf and '\tlogin = "user";' in conf
    assert "dnsu2t {\n\tremote_ip = 9.9.9.9;" in conf
    assert (proxy_dir / "no_proxy").read_text() == "10.0.0.0/8\nexample.org"
    event = agent.wait_for_event("host_config_proxy_set", 10)
    assert event["dir"] == str(proxy_dir)
    assert api("GET", "/v1/device/host-config").body["network"]["proxy"] == proxy
    api("PATCH", "/v1/device/host-config", {"network": {"proxy": {"port": "8080"}}})
    shown = api("GET", "/v1/device/host-config").body["network"]["proxy"]
    assert shown == {**proxy, "port": 8080}

    # the hostname needs systemd-hostnamed: a clear 503 without it, nothing changed
    renamed = api("PATCH", "/v1/device/host-config", {"network": {"hostname": "box-1"}})
    assert renamed.status == 503
    assert "systemd-hostnamed is not reachable over D-Bus" in renamed.body["message"]
    assert socket.gethostname() != "box-1"

    # an empty proxy removes it
    assert api("PATCH", "/v1/device/host-config", {"network": {"proxy": {}}}).status == 200
    assert "proxy" not in api("GET", "/v1/device/host-config").body["network"]
    assert not (proxy_dir / "redsocks.conf").exists()


def test_update_locks_are_honoured(device, agent_with_boot):
    agent, proxy_dir = agent_with_boot
    api = agent.api
    lock = _lock(device)
    body = {"network": {"proxy": {"type": "socks5", "ip": "10.1.1.1", "port": 1080}}}
    refused = api("PATCH", "/v1/device/host-config", body)
    assert refused.status == 423 and "locked" in refused.body["message"]
    assert not (proxy_dir / "redsocks.conf").exists()
    # nothing to change: no lock needed (as the reference)
    assert api("PATCH", "/v1/device/host-config", {"network": {}}).status == 200
    # force overrides the lock
    assert api("PATCH", "/v1/device/host-config", {**body, "force": True}).status == 200
    assert (proxy_dir / "redsocks.conf").exists()
    lock.unlink()
    body["network"]["proxy"]["ip"] = "10.2.2.2"
    assert api("PATCH", "/v1/device/host-config", body).status == 200
    assert "ip = 10.2.2.2;" in (proxy_dir / "redsocks.conf").read_text()
