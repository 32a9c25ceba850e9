"""The D-Bus shell: the exact busctl calls for hostnamed and systemd, through a stand-in
busctl that records its arguments (the real one needs a system bus this machine lacks)."""

import json
import stat

import pytest

from agent.hostconfig.dbus import HostBus, HostBusError

FAKE = """#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if "get-property" in args:
    print('s "devbox"')
elif "GetUnit" in args and args[-1] not in {loaded!r}:
    print("Unit " + args[-1] + " not loaded.", file=sys.stderr)
    sys.exit(1)
elif {fail!r}:
    print("Could not activate remote peer.", file=sys.stderr)
    sys.exit(1)
"""


def fake_busctl(tmp_path, loaded=(), fail=False):
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "busctl"
    script.write_text(FAKE.format(log=str(log), loaded=list(loaded), fail=fail))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), log


def calls(log):
    return [json.loads(line)[1:] for line in log.read_text().splitlines()]  # no --timeout


async def test_hostname_is_hostnamed_static_hostname(tmp_path):
    busctl, log = fake_busctl(tmp_path)
    bus = HostBus(busctl)
    assert (await bus.hostname()) == "devbox"
    await bus.set_hostname("newname")
    host = ["org.freedesktop.hostname1", "/org/freedesktop/hostname1", "org.freedesktop.hostname1"]
    assert calls(log) == [
        ["get-property", *host, "StaticHostname"],
        ["call", *host, "SetStaticHostname", "sb", "newname", "false"],
        ["call", *host, "SetHostname", "sb", "newname", "false"],
    ]


async def test_no_hostnamed_is_a_clear_error(tmp_path):
    busctl, _ = fake_busctl(tmp_path, fail=True)
    with pytest.raises(HostBusError, match="systemd-hostnamed is not reachable over D-Bus"):
        await HostBus(busctl).set_hostname("x")
    with pytest.raises(HostBusError, match="busctl"):
        await HostBus(str(tmp_path / "missing")).set_hostname("x")


async def test_only_the_loaded_proxy_units_are_restarted(tmp_path):
    busctl, log = fake_busctl(tmp_path, loaded=["redsocks.service"])
    assert (await HostBus(busctl).restart_proxy_units()) == ["redsocks.service"]
    restarts = [c for c in calls(log) if "RestartUnit" in c]
    assert restarts == [
        [
            "call",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "RestartUnit",
            "ss",
            "redsocks.service",
            "replace",
        ]
    ]
    busctl, _ = fake_busctl(tmp_path / "none" if (tmp_path / "none").mkdir() is None else tmp_path)
    assert (await HostBus(busctl).restart_proxy_units()) == []


async def test_the_recorder_keeps_the_hostname_and_touches_nothing(tmp_path):
    from testbed.hoststandin import RecordingHostBus

    bus = RecordingHostBus(tmp_path / "host-actions.jsonl")
    with pytest.raises(HostBusError):
        await bus.hostname()
    await bus.set_hostname("one")
    await bus.set_hostname("two")
    assert (await bus.hostname()) == "two"
    assert (await bus.restart_proxy_units()) == []
    lines = (tmp_path / "host-actions.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["hostname", "hostname"]
