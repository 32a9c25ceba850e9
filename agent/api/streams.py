"""Streaming routes: `/v2/local/logs` (every service's log as NDJSON, plus the agent's own
system messages) and `/v2/journal-logs` (journalctl's output, where the host has journald).

Every stream is bounded: a cap on concurrent streams of each kind (429 beyond), a bounded queue
per log client (agent/api/loghub.py), and the handler is cancelled when its client goes, which
stops its followers or kills (and reaps) its journalctl.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from agent.api.common import ApiError, flag, optional_int, optional_str, read_body, scope_of
from agent.api.ports import CONTEXT, ApiContext
from agent.model import ContainerState

if TYPE_CHECKING:
    from agent.api.loghub import LogHub

log = structlog.get_logger("agent.api")

NDJSON = "application/x-ndjson"
DISCONNECT_POLL_S = 0.5
MAX_JOURNAL_STREAMS = 4
JOURNALCTL = "journalctl"  # looked up on PATH
JOURNAL_FORMATS = {
    "short", "short-iso", "short-precise", "short-monotonic", "short-unix", "verbose",
    "export", "json", "json-pretty", "json-sse", "cat", "with-unit",
}  # fmt: skip
_SAFE_ARG = re.compile(r"^[A-Za-z0-9@:+., _/-]{1,200}$")


class Hub:
    """The log hub (agent/api/loghub.py), made by the first `/v2/local/logs`: an agent nobody
    reads logs from doesn't hold its module (≈ 0.1 MB, with the stream code it brings)."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx
        self.hub: LogHub | None = None

    def get(self) -> LogHub:
        if self.hub is None:
            from agent.api.loghub import LogHub

            self.hub = LogHub(self._ctx)
        return self.hub

    @property
    def streams(self) -> int:
        return 0 if self.hub is None else self.hub.streams

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close()


LOG_HUB: web.AppKey[Hub] = web.AppKey("log_hub")


class Journals:
    """The journalctl processes serving clients, and the slots taken (a slot is taken before
    the process is spawned, so concurrent requests can't overshoot the cap)."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.slots = 0


JOURNALS: web.AppKey[Journals] = web.AppKey("journals")


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@contextlib.asynccontextmanager
async def until_disconnected(request: web.Request) -> AsyncIterator[None]:
    """Cancel the body of this block when the client goes, even while it waits for something
    to send (aiohttp only notices a gone client when a write fails). Ends quietly then."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        # polled: aiohttp has no callback for a connection lost while nothing is written
        while not _gone(request):  # noqa: ASYNC110
            await asyncio.sleep(DISCONNECT_POLL_S)
        gone = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
    except ConnectionResetError:
        pass  # a write found the client gone first
    finally:
        watcher.cancel()


async def local_logs(request: web.Request) -> web.StreamResponse:
    scope = scope_of(request)
    only = request.query.get("serviceName")

    def wants(c: ContainerState) -> bool:
        return scope.allows(c.app_id) and (only is None or c.service_name == only)

    from agent.api.loghub import Subscriber, encode

    hub = request.app[LOG_HUB].get()
    sub = Subscriber(wants, system=only is None)
    hub.subscribe(sub)  # 429 when too many streams are open
    try:
        response = web.StreamResponse(headers={"Content-Type": f"{NDJSON}; charset=utf-8"})
        async with until_disconnected(request):
            await response.prepare(request)
            await response.write(encode({"message": "Streaming logs", "isSystem": True}))
            while batch := await sub.next_batch():
                await response.write(batch)
    finally:
        hub.unsubscribe(sub)
    return response


async def journal_logs(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    args = ["--no-pager"]
    if flag(body, "all"):
        args.append("--all")
    if flag(body, "follow"):
        args.append("--follow")
    count = optional_int(body, "count")
    if count:
        args += ["--lines", str(count)]
    fmt = optional_str(body, "format") or "short"
    if fmt not in JOURNAL_FORMATS:
        raise ApiError(400, f"'format' must be one of {', '.join(sorted(JOURNAL_FORMATS))}")
    args += ["--output", fmt]
    for field, option in (("unit", "--unit"), ("since", "--since"), ("until", "--until")):
        value = optional_str(body, field)
        if value is not None:
            args += [option, _safe(field, value)]
    container = optional_str(body, "containerId")
    if container is not None:
        if not re.fullmatch(r"[0-9a-f]{12,64}", container):
            raise ApiError(400, "'containerId' must be a container id (hex)")
        args.append(
            f"CONTAINER_ID_FULL={container}"
            if len(container) == 64
            else f"CONTAINER_ID={container[:12]}"
        )
    journalctl = shutil.which(JOURNALCTL)
    if journalctl is None:
        raise ApiError(501, "this device has no journald (journalctl is not installed)")
    journals = request.app[JOURNALS]
    if journals.slots >= MAX_JOURNAL_STREAMS:
        raise ApiError(
            429, f"too many journal streams open (at most {MAX_JOURNAL_STREAMS}); retry later"
        )
    journals.slots += 1
    try:
        return await _stream_journal(request, journals, [journalctl, *args], fmt)
    finally:
        journals.slots -= 1


async def _stream_journal(
    request: web.Request, journals: Journals, argv: list[str], fmt: str
) -> web.StreamResponse:
    # fork and exec in a thread: asyncio's create_subprocess_exec forks on the event loop
    # (and waits for its child-watcher thread to start), which held it for 50 ms and more
    proc = await asyncio.to_thread(_spawn, argv)
    journals.procs.add(proc)
    try:
        assert proc.stdout is not None
        reader = asyncio.StreamReader()
        pipe, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), proc.stdout
        )
        content_type = NDJSON if fmt == "json" else "text/plain"
        response = web.StreamResponse(headers={"Content-Type": f"{content_type}; charset=utf-8"})
        try:
            async with until_disconnected(request):
                await response.prepare(request)
                while chunk := await reader.read(65536):
                    await response.write(chunk)
        finally:
            pipe.close()
    finally:
        journals.procs.discard(proc)
        await _end(proc)
    return response


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


async def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill journalctl if it still runs and reap it (no zombie left behind)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await asyncio.shield(asyncio.to_thread(proc.wait))


def _safe(field: str, value: str) -> str:
    if not _SAFE_ARG.match(value) or value.startswith("-"):
        raise ApiError(400, f"'{field}' has characters journalctl won't take: {value[:40]!r}")
    return value


def add_routes(app: web.Application) -> None:
    app[LOG_HUB] = hub = Hub(app[CONTEXT])
    app[JOURNALS] = journals = Journals()
    app.router.add_get("/v2/local/logs", local_logs)
    app.router.add_post("/v2/journal-logs", journal_logs)

    async def close(_app: web.Application) -> None:
        await hub.close()
        for proc in [*journals.procs]:
            await _end(proc)

    app.on_shutdown.append(close)
