"""`device-agent status | update | logs` against a running agent."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from testbed.processes import REPO_ROOT
from tests.helpers import wait_until
from tests.integration.api_helpers import APP, deploy
from tests.integration.demo_app import cli


def test_status_update_and_logs(device, images):
    deploy(device, images)
    shown = cli(device, "status")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"device {device.uuid} (api-device): Operational (Online), Idle" in out
    assert "why: heartbeat up (cloudlink disabled)" in out
    assert "heartbeat: last poll" in out
    assert "tunnel: disabled, not connected (cloudlink disabled)" in out
    assert "app apiapp (id 77): release r1, done for" in out
    assert "main  Running" in out and "aux   Running" in out

    as_json = json.loads(cli(device, "status", "--json").stdout)
    assert as_json["apps"][0]["appUuid"] == APP
    assert as_json["device"]["heartbeat"]["ageSeconds"] < 30

    polls = len(device.state()["polls"])
    updated = cli(device, "update", "--force")
    assert updated.returncode == 0 and "update requested" in updated.stdout
    assert len(device.state()["polls"]) > polls

    (main,) = device.by_service()["main"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "agent", "logs", "main", "--config", str(device.agent.config_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    lines: list[str] = []
    stdout = follower.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    wait_until(lambda: any("Streaming logs" in line for line in lines), 30, message="the stream")

    def echoed() -> bool:
        # written again until it shows: the agent starts following the container a moment
        # after the stream opens
        if any("from-main-service" in line for line in lines):
            return True
        main.exec_run(["sh", "-c", "echo from-main-service > /proc/1/fd/1"])
        return False

    wait_until(echoed, 30, interval=0.5, message=lambda: "".join(lines))
    follower.terminate()
    follower.wait(timeout=10)
    reader.join(timeout=10)
    out = "".join(lines)
    assert "[agent] Streaming logs" in out
    assert "[main] from-main-service" in out, out

    device.agent.stop()
    down = cli(device, "status")
    assert down.returncode == 2 and "cannot reach the agent's API" in down.stderr
