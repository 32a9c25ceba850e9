"""The streaming routes against the real agent and engine: a `/v2/local/logs` client that never
reads while a service writes 60,000 lines costs the agent a bounded queue (its RSS stays put)
and the lost lines are counted; a follow `/v2/journal-logs` client that goes takes its
journalctl with it, and the number of journal streams is capped."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.api_helpers import (
    APP,
    APP_ID,
    open_stream,
    rss_kib,
    running,
    unread,
    wait_done,
)

LINES = 60_000
# waits for /tmp/go (so the stream is open first), writes LINES lines, then idles
CHATTY = (
    "while [ ! -e /tmp/go ]; do sleep 0.2; done; i=0; "
    f"while [ $i -lt {LINES} ]; do "
    'echo "line $i ......................................................................"; '
    "i=$((i+1)); done; echo all-written; "
    "trap 'exit 0' TERM; while true; do sleep 1; done"
)


def children_named(pid: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm == name:
            found.append(int(entry.name))
    return found


def read_all(sock: socket.socket) -> tuple[int, int]:
    """Read the stream until every line of the service is accounted for: (lines received,
    lines the markers say were dropped)."""
    sock.settimeout(10)
    received, dropped, buf, head_done = 0, 0, b"", False
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while received + dropped < LINES + 1 and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        assert chunk, f"stream ended at {received} received, {dropped} dropped"
        buf += chunk
        if not head_done:
            if b"\r\n\r\n" not in buf:
                continue
            head, buf = buf.split(b"\r\n\r\n", 1)
            assert head.split(b"\r\n")[0].endswith(b" 200 OK")
            head_done = True
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            line = json.loads(raw)
            if line.get("dropped"):
                dropped += line["dropped"]
            elif not line["isSystem"]:  # `line N ...` and the last one, `all-written`
                received += 1
                assert line["message"] not in seen, f"{line['message'][:12]} came twice"
                seen.add(line["message"])
    return received, dropped


def dropped_metric(agent) -> float:
    text = agent.api("GET", "/metrics").raw.decode()
    for line in text.splitlines():
        if line.startswith("device_agent_api_log_lines_dropped_total "):
            return float(line.split()[1])
    raise AssertionError("no device_agent_api_log_lines_dropped_total in /metrics")


def test_a_client_that_never_reads_leaves_the_agent_rss_bounded(device, images):
    chatty = service(images.aux_v1, service_id=1, image_id=11, command=["/bin/sh", "-c", CHATTY])
    target = app(
        app_id=APP_ID, name="chatty", release_uuid="r1", release_id=1, services={"talk": chatty}
    )
    device.cloud.set_target(device.uuid, device_target({APP: target}, name="logs-device"))
    agent = device.agent.start()
    agent.wait_api()
    wait_done(device, APP)
    container = device.docker.containers.get(running(device)["talk"])
    sock = open_stream(agent.api_url, "/v2/local/logs", agent.api_key())
    # the agent has subscribed this client (its first line is there, unread)
    wait_until(lambda: b"Streaming logs" in unread(sock), 10, message="the stream's first line")
    before = rss_kib(agent.pid)
    container.exec_run(["touch", "/tmp/go"])
    wait_until(
        lambda: b"all-written" in container.logs(tail=1), 120, message=lambda: agent.log_tail(20)
    )
    time.sleep(3)  # the point: the agent reads on what the engine had; no end to see from here
    grown = rss_kib(agent.pid) - before
    print(f"agent RSS {before} KiB before, grew {grown} KiB over {LINES} lines not read")
    assert grown < 8 * 1024, f"RSS grew {grown} KiB"  # the unbounded queue grew ~80 MiB
    # what the kernel's socket buffers took went on; the rest was dropped and counted
    assert dropped_metric(agent) > LINES / 10
    received, dropped = read_all(sock)
    assert received + dropped == LINES + 1 and dropped == dropped_metric(agent)
    sock.close()
    wait_until(lambda: agent.events_named("api_log_lines_dropped"), 10)
    assert agent.api("GET", "/ping", key=None).status == 200


@pytest.mark.timeout(300)
def test_journalctl_goes_with_its_client_and_streams_are_capped(device, images):
    device.cloud.set_target(device.uuid, device_target({}, name="journal-device"))
    agent = device.agent.start()
    agent.wait_api()
    body = json.dumps({"follow": True, "count": 1}).encode()
    for _ in range(5):  # 20 follow streams in all, 4 at a time
        socks = [open_stream(agent.api_url, "/v2/journal-logs", agent.api_key(), body)]
        for _ in range(3):
            socks.append(open_stream(agent.api_url, "/v2/journal-logs", agent.api_key(), body))
        wait_until(lambda: len(children_named(agent.pid, "journalctl")) == 4, 10)
        refused = agent.api("POST", "/v2/journal-logs", {"follow": True})
        assert refused.status == 429 and "too many journal streams" in refused.body["message"]
        for sock in socks:
            sock.close()
        # gone with their clients, and reaped: not even a zombie is left
        wait_until(lambda: not children_named(agent.pid, "journalctl"), 5)
    assert agent.api("GET", "/ping", key=None).status == 200
