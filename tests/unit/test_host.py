import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent import host as host_module
from agent.host import HostAction, HostError, LogindHost, make_host
from agent.hostconfig import dbus
from agent.hostconfig.dbus import HostBus, make_host_bus
from testbed import hoststandin
from testbed.hoststandin import RecordingHost, RecordingHostBus

REPO = Path(__file__).resolve().parents[2]


def test_a_device_reaches_logind_and_hostnamed(tmp_path):
    assert isinstance(make_host(tmp_path), LogindHost)
    assert isinstance(make_host_bus(tmp_path), HostBus)


async def test_the_test_entry_point_puts_the_recorder_in_the_hosts_place(tmp_path, monkeypatch):
    monkeypatch.setattr(host_module, "STAND_IN", None)
    monkeypatch.setattr(dbus, "STAND_IN", None)
    assert not hoststandin.install({})
    assert isinstance(make_host(tmp_path), LogindHost)
    assert hoststandin.install({hoststandin.RECORD_HOST_ENV: "1"})
    host = make_host(tmp_path)
    assert isinstance(host, RecordingHost) and isinstance(make_host_bus(tmp_path), RecordingHostBus)
    await host.perform(HostAction.REBOOT)
    await host.perform(HostAction.SHUTDOWN)
    lines = [
        json.loads(line) for line in (tmp_path / "host-actions.jsonl").read_text().splitlines()
    ]
    assert [line["action"] for line in lines] == ["reboot", "shutdown"]


def test_nothing_under_agent_imports_the_test_scaffolding():
    """The agent package, imported whole, loads no testbed module (issue 15, point 6)."""
    script = (
        "import pkgutil, importlib, sys, agent\n"
        "for m in pkgutil.walk_packages(agent.__path__, 'agent.'):\n"
        "    if m.name != 'agent.__main__': importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'testbed' or n.startswith('testbed.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


async def test_logind_host_calls_busctl(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "busctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    await LogindHost(str(fake)).perform(HostAction.REBOOT)
    await LogindHost(str(fake)).perform(HostAction.SHUTDOWN)
    manager = "org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager"
    assert calls.read_text().splitlines() == [
        f"call {manager} Reboot b false",
        f"call {manager} PowerOff b false",
    ]


async def test_logind_host_errors_are_clear(tmp_path):
    fake = tmp_path / "busctl"
    fake.write_text("#!/bin/sh\necho 'Access denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(HostError, match="logind refused to reboot: Access denied"):
        await LogindHost(str(fake)).perform(HostAction.REBOOT)
    host = LogindHost()
    host._busctl = None
    with pytest.raises(HostError, match="busctl"):
        await host.perform(HostAction.SHUTDOWN)
