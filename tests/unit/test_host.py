import asyncio
import json

import pytest

from agent.host import HostAction, HostError, LogindHost, RecordingHost, make_host


def test_recording_host_records(tmp_path):
    host = make_host("record", tmp_path)
    assert isinstance(host, RecordingHost)
    asyncio.run(host.perform(HostAction.REBOOT))
    asyncio.run(host.perform(HostAction.SHUTDOWN))
    lines = [
        json.loads(line) for line in (tmp_path / "host-actions.jsonl").read_text().splitlines()
    ]
    assert [line["action"] for line in lines] == ["reboot", "shutdown"]


def test_logind_host_calls_busctl(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "busctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    asyncio.run(LogindHost(str(fake)).perform(HostAction.REBOOT))
    asyncio.run(LogindHost(str(fake)).perform(HostAction.SHUTDOWN))
    manager = "org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager"
    assert calls.read_text().splitlines() == [
        f"call {manager} Reboot b false",
        f"call {manager} PowerOff b false",
    ]


def test_logind_host_errors_are_clear(tmp_path):
    fake = tmp_path / "busctl"
    fake.write_text("#!/bin/sh\necho 'Access denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(HostError, match="logind refused to reboot: Access denied"):
        asyncio.run(LogindHost(str(fake)).perform(HostAction.REBOOT))
    host = LogindHost()
    host._busctl = None
    with pytest.raises(HostError, match="busctl"):
        asyncio.run(host.perform(HostAction.SHUTDOWN))
