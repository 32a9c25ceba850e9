"""Idle memory (issue 10, point 8): the running agent doesn't import what only a rare request
needs. Each case runs the real composition (`agent.cli.main(["run", ...])`) in a subprocess for
a few seconds — API listening, poll, report, apply and connectivity loops started — against an
engine and a cloud that aren't there, then lists what it imported. A module listed here
showing up at idle is a regression of the memory bench (docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LAZY = (
    "prometheus_client",  # GET /metrics
    "pyroute2",  # kernel WireGuard only
    "agent.diagnostics",  # `device-agent diagnose`
    "agent.local.legacy",  # POST /v2/local/target-state
    "agent.api.loghub",  # the first GET /v2/local/logs
    "agent.api.hostconfig",  # GET/PATCH /v1/device/host-config, with D-Bus and proxy files
    "agent.hostconfig",
    "zoneinfo",  # a timed update window (agent/model/windows.py); sysconfig with it
    "sysconfig",
    "ctypes",  # adjtimex, only while a timed update window waits for the clock
    "rich",  # structlog's pretty tracebacks (a developer's venv has it; a device doesn't)
    "pygments",
)

RUN_FOR_S = 3.0
# SIGTERM only once the agent handles it (its loop has replaced the default action): on a
# loaded machine start-up alone may take longer than the idle run
SCRIPT = """
import json, os, signal, sys, threading, time
from agent import cli
def stop_later():
    deadline = time.monotonic() + 50
    while signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep({seconds})
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=stop_later, daemon=True).start()
code = cli.main(["run", "--config", sys.argv[1]])
print("MODULES " + json.dumps(sorted(sys.modules)), flush=True)
sys.exit(code)
"""


def idle_modules(tmp_path: Path, **extra: Any) -> set[str]:
    config = {
        "uuid": "0" * 32,
        "apiEndpoint": "http://127.0.0.1:9",  # discard port: nothing answers
        "deviceApiKey": "k",
        "listenPort": 0,
        "dataDir": str(tmp_path / "data"),
        "lockDir": str(tmp_path / "locks"),
        "dockerHost": f"unix://{tmp_path}/no-engine.sock",
        "logFormat": "json",
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(seconds=RUN_FOR_S), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"api_listening"' in out.stdout + out.stderr  # it really ran
    line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_idle_agent_without_vpn_imports_none_of_the_lazy_parts(tmp_path):
    modules = idle_modules(tmp_path)
    assert "agent.daemon" in modules and "aiohttp.web" in modules
    assert [name for name in LAZY if loaded(modules, name)] == []


@pytest.mark.parametrize("kind", ["wireguard", "openvpn"])
def test_idle_agent_with_a_vpn_probes_the_link_without_pyroute2(tmp_path, kind):
    """The probe runs (no interface of that name here) and reads the link with the standard
    library: only a kernel WireGuard interface's peers need pyroute2."""
    modules = idle_modules(tmp_path, vpn={"kind": kind, "interface": "notthere0"})
    assert "agent.connectivity.netlink" in modules
    assert [name for name in LAZY if loaded(modules, name)] == []


GATE_SCRIPT = """
import json, sys
from agent.reconcile.window_gate import WindowGate
def parts():
    return sorted(m for m in ("zoneinfo", "sysconfig", "ctypes") if m in sys.modules)
before = parts()
always = WindowGate(lambda: ("", "")).verdict()
untimed = parts()
timed = WindowGate(lambda: ("00:00-23:59", "Europe/Berlin")).verdict()
print(json.dumps([before, untimed, parts(), always.hold, timed.setting]))
"""


def test_the_time_zone_parts_load_once_a_timed_update_window_is_set():
    """The other side of the window gate's laziness: without a window its verdict needs no
    zone or clock probe; a timed window loads them (zone, adjtimex) and still gets its verdict."""
    out = subprocess.run(
        [sys.executable, "-c", GATE_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    before, untimed, timed, always_hold, timed_setting = json.loads(out.stdout)
    assert before == [] and untimed == [] and always_hold is None
    assert timed == ["ctypes", "sysconfig", "zoneinfo"] and timed_setting == "00:00-23:59"
