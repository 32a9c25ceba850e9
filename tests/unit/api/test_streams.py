"""The streaming routes' bounds, against the real aiohttp server with a stand-in engine: a
client that never reads costs a bounded queue and its lost lines are counted; streams are
capped; a client that goes stops its followers or kills (and reaps) its journalctl."""

import asyncio
import contextlib
import json
import os
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from agent.api import loghub, streams
from agent.api.metrics import AgentMetrics
from agent.events.bus import Bus
from agent.model.current import ContainerState, ContainerStatus, CurrentState
from tests.unit.api.fakes import ApiTestServer, build_app, fake_context
from tests.unit.api.metrics_fakes import fake_agent as metrics_agent

LINES = 60_000
PADDING = "x" * 150


def container(cid: str, app_id: int = 5, service: str = "main") -> ContainerState:
    return ContainerState(
        id=cid,
        name=f"{service}_1_1_r1",
        app_id=app_id,
        app_uuid=f"app{app_id}",
        service_name=service,
        service_id=1,
        image_id=1,
        release_uuid="r1",
        release_id=1,
        image="img",
        image_docker_id="sha256:1",
        config_hash=None,
        status=ContainerStatus.RUNNING,
    )


class LogEngine:
    """Each followed container writes `lines` lines at once, then `lines` more each time
    `burst()` is called (still running meanwhile)."""

    def __init__(self, containers: list[ContainerState], lines: int) -> None:
        self.containers = tuple(containers)
        self.lines = lines
        self.open = 0  # engine log streams open now (one thread each in the real engine)
        self.written = 0
        self._more = asyncio.Condition()

    async def burst(self) -> None:
        async with self._more:
            self._more.notify_all()

    async def current_state(self, _ids):
        return CurrentState(containers=self.containers)

    async def log_lines(self, cid, since, follow):
        self.open += 1
        try:
            burst = 0
            while True:
                for i in range(self.lines):
                    self.written += 1
                    yield time.time(), f"{cid} line {burst}.{i} {PADDING}"
                    if i % 500 == 0:
                        await asyncio.sleep(0)
                async with self._more:  # following: the service is quiet now
                    await self._more.wait()
                burst += 1
        finally:
            self.open -= 1


async def serve(tmp_path: Path, engine: LogEngine, check) -> None:
    agent = fake_context(tmp_path, engine=engine)
    app = build_app(agent, tmp_path)

    async with TestClient(ApiTestServer(app)) as client:
        await check(client, agent, app)


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def never_reading_client(port: int, key: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        # HTTP/1.0: the body is plain NDJSON until the server closes (no chunk framing)
        f"GET /v2/local/logs HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    return sock


async def test_a_client_that_never_reads_costs_a_bounded_queue_and_drops_are_counted(tmp_path):
    engine = LogEngine([container("c1")], LINES)

    async def check(client, agent, app):
        dropped_before = loghub.STATS.lines
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            sock = await asyncio.to_thread(
                never_reading_client, client.server.port, agent.keys.global_key
            )
            await wait_for(lambda: engine.written == LINES, 60)
            await asyncio.sleep(0.3)  # let the last lines reach the queue
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        # 60,000 lines of ~170 bytes (10 MB) went by; the agent kept at most its queue
        assert grown < 3 * 1024 * 1024, grown
        assert loghub.STATS.lines - dropped_before > LINES // 2
        # now read everything: every line either arrived or was counted in a marker
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        received, dropped, buf = 0, 0, b""
        deadline = time.monotonic() + 30
        while received + dropped < LINES:
            assert time.monotonic() < deadline, (received, dropped)
            with contextlib.suppress(TimeoutError):
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                assert chunk, "the server ended the stream"
                buf += chunk
            if b"\r\n\r\n" in buf and buf.startswith(b"HTTP/"):
                head, buf = buf.split(b"\r\n\r\n", 1)
                assert b" 200 " in head.split(b"\r\n")[0]
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                line = json.loads(raw)
                if line.get("dropped"):
                    dropped += line["dropped"]
                    assert line["isSystem"] is True and "dropped" in line["message"]
                elif not line["isSystem"]:
                    received += 1
        assert received + dropped == LINES and dropped > 0
        scraped = AgentMetrics(metrics_agent(), Bus()).render().decode()  # what /metrics serves
        counted = next(
            float(line.split()[1])
            for line in scraped.splitlines()
            if line.startswith("device_agent_api_log_lines_dropped_total ")
        )
        assert counted - dropped_before == dropped
        sock.close()
        await wait_for(lambda: app[streams.LOG_HUB].streams == 0 and engine.open == 0, 5)

    await serve(tmp_path, engine, check)


async def test_streams_share_one_follower_per_container_and_the_next_one_is_refused(tmp_path):
    engine = LogEngine([container("c1"), container("c2", service="aux")], 3)

    async def check(client, agent, app):
        key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        opened = []
        for _ in range(loghub.MAX_STREAMS):
            response = await client.get("/v2/local/logs", headers=key)
            assert response.status == 200
            opened.append(response)
        await wait_for(lambda: engine.open == 2)  # two containers: two followers, not 16
        refused = await client.get("/v2/local/logs", headers=key)
        assert refused.status == 429
        body = await refused.json()
        assert body["status"] == "failed" and "too many log streams" in body["message"]
        # what the services write now reaches every client, once
        await engine.burst()
        for response in opened:
            seen: list[Any] = []
            while len(seen) < 6:
                line = json.loads(await asyncio.wait_for(response.content.readline(), 5))
                if not line["isSystem"] and " line 1." in line["message"]:
                    seen.append(line["message"].split(" x")[0])
            assert sorted(seen) == [f"{c} line 1.{i}" for c in ("c1", "c2") for i in range(3)]
        opened.pop().close()
        await wait_for(lambda: app[streams.LOG_HUB].streams == loghub.MAX_STREAMS - 1)
        again = await client.get("/v2/local/logs", headers=key)
        assert again.status == 200
        opened.append(again)
        for response in opened:
            response.close()
        # gone clients: handlers cancelled, followers stopped
        await wait_for(lambda: app[streams.LOG_HUB].streams == 0 and engine.open == 0, 5)

    await serve(tmp_path, engine, check)


async def test_an_app_key_streams_only_its_own_services(tmp_path):
    engine = LogEngine([container("mine1"), container("theirs", app_id=6)], 2)

    async def check(client, agent, app):
        key = {"Authorization": f"Bearer {agent.keys.app_keys[5]}"}
        response = await client.get("/v2/local/logs?serviceName=main", headers=key)
        messages = []
        with contextlib.suppress(TimeoutError):
            while True:
                line = json.loads(await asyncio.wait_for(response.content.readline(), 1.5))
                messages.append(line["message"])
        assert any(m.startswith("mine1 line") for m in messages)
        assert not any("theirs" in m for m in messages)
        assert engine.open == 1
        response.close()

    await serve(tmp_path, engine, check)


FAKE_JOURNALCTL = """#!/bin/sh
echo $$ >> "$FAKE_JOURNAL_PIDS"
echo "journal line one"
exec sleep 600
"""


def fake_journalctl(tmp_path: Path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "journalctl"
    script.write_text(FAKE_JOURNALCTL)
    script.chmod(0o755)
    pids = tmp_path / "pids"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_JOURNAL_PIDS", str(pids))
    return pids


def alive(pid: int) -> bool:
    """Still there, even as a zombie nobody reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_journalctl_is_killed_and_reaped_when_its_client_goes(tmp_path, monkeypatch):
    pids_file = fake_journalctl(tmp_path, monkeypatch)
    engine = LogEngine([], 0)

    async def check(client, agent, app):
        key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        journals = app[streams.JOURNALS]
        for _round in range(5):  # 20 requests in all, never more than the cap at once
            responses = []
            for _ in range(streams.MAX_JOURNAL_STREAMS):
                response = await client.post("/v2/journal-logs", json={"follow": True}, headers=key)
                assert response.status == 200
                first = await asyncio.wait_for(response.content.readline(), 5)
                assert first == b"journal line one\n"
                responses.append(response)
            refused = await client.post("/v2/journal-logs", json={"follow": True}, headers=key)
            assert refused.status == 429
            assert "too many journal streams" in (await refused.json())["message"]
            pids = [int(p) for p in pids_file.read_text().split()]
            assert all(alive(p) for p in pids[-len(responses) :])
            for response in responses:
                response.close()
            await wait_for(lambda: not journals.procs and journals.slots == 0, 5)
        pids = [int(p) for p in pids_file.read_text().split()]
        assert len(pids) == 5 * streams.MAX_JOURNAL_STREAMS
        assert not [p for p in pids if alive(p)]

    await serve(tmp_path, engine, check)


class BuggyEngine(LogEngine):
    async def current_state(self, _ids):
        raise RuntimeError("a bug in listing containers")


async def test_a_bug_in_the_scan_is_logged_once_and_the_stream_stays(tmp_path):
    engine = BuggyEngine([], 0)

    async def check(client, agent, app):
        key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        with capture_logs() as logged:
            response = await client.get("/v2/local/logs", headers=key)
            first = json.loads(await response.content.readline())
            assert first == {"message": "Streaming logs", "isSystem": True}
            await asyncio.sleep(2.5)  # three scans
            assert app[streams.LOG_HUB].streams == 1
            response.close()
        failed = [e for e in logged if e["event"] == "log_hub_scan_failed"]
        assert len(failed) == 1

    await serve(tmp_path, engine, check)


async def test_streams_end_at_once_when_the_agent_stops(tmp_path):
    engine = LogEngine([container("c1")], 1)

    async def check(client, agent, app):
        key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        response = await client.get("/v2/local/logs", headers=key)
        await response.content.readline()
        started = time.monotonic()
        await app[streams.LOG_HUB].close()  # what the app's on_shutdown does
        assert await asyncio.wait_for(response.content.read(), 2) is not None
        assert response.content.at_eof() and time.monotonic() - started < 1
        await wait_for(lambda: engine.open == 0, 2)

    await serve(tmp_path, engine, check)
