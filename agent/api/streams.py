"""Streaming routes: `/v2/local/logs` (every service's log as NDJSON, plus the agent's own
system messages) and `/v2/journal-logs` (journalctl's output, where the host has journald)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from aiohttp import web

from agent import logs
from agent.api import actions
from agent.api.common import ApiError, flag, optional_int, optional_str, read_body, scope_of
from agent.api.context import AGENT
from agent.errors import EngineError
from agent.model import ContainerState

log = structlog.get_logger("agent.api")

RESCAN_S = 1.0
NDJSON = "application/x-ndjson"
# agent events a developer watching `balena push` output wants to see
SYSTEM_EVENTS = {
    "target_accepted": "target state accepted",
    "update_status_changed": "update status",
    "pull_started": "downloading image",
    "pull_done": "downloaded image",
    "pull_failed": "download failed",
    "step_started": "",
    "step_failed": "failed",
    "app_action": "app action",
    "service_action": "service action",
}
JOURNAL_FORMATS = {
    "short", "short-iso", "short-precise", "short-monotonic", "short-unix", "verbose",
    "export", "json", "json-pretty", "json-sse", "cat", "with-unit",
}  # fmt: skip
_SAFE_ARG = re.compile(r"^[A-Za-z0-9@:+., _/-]{1,200}$")


def _system_line(event: MutableMapping[str, Any]) -> dict[str, Any] | None:
    name = event.get("event")
    if name not in SYSTEM_EVENTS:
        return None
    details = " ".join(
        f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp")
    )
    prefix = SYSTEM_EVENTS[name]
    return {
        "message": f"{prefix}: {details}" if prefix else details,
        "timestamp": int(time.time() * 1000),
        "isSystem": True,
    }


async def local_logs(request: web.Request) -> web.StreamResponse:
    agent, scope = request.app[AGENT], scope_of(request)
    only = request.query.get("serviceName")
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = time.time()

    def system(event: MutableMapping[str, Any]) -> None:
        line = _system_line(event)
        if line is not None and only is None:
            queue.put_nowait(line)

    async def follow(c: ContainerState, since: float | None) -> None:
        with contextlib.suppress(EngineError):
            async for at, message in agent.engine.log_lines(c.id, since, follow=True):
                queue.put_nowait(
                    {
                        "message": message,
                        "timestamp": int(at * 1000),
                        "serviceName": c.service_name,
                        "serviceId": c.service_id,
                        "appId": c.app_id,
                        "isSystem": False,
                    }
                )

    response = web.StreamResponse(headers={"Content-Type": f"{NDJSON}; charset=utf-8"})
    await response.prepare(request)
    await response.write(_line({"message": "Streaming logs", "isSystem": True}))
    followers: dict[str, asyncio.Task[None]] = {}
    logs.add_sink(system)
    try:
        first = True
        while True:
            try:
                current = await actions.current_state(agent)
            except EngineError:
                current = None
            for c in current.containers if current is not None else ():
                if c.id in followers or not scope.allows(c.app_id):
                    continue
                if only is not None and c.service_name != only:
                    continue
                followers[c.id] = asyncio.create_task(follow(c, started if first else None))
            first = False
            deadline = time.monotonic() + RESCAN_S
            while (left := deadline - time.monotonic()) > 0:
                try:
                    line = await asyncio.wait_for(queue.get(), timeout=left)
                except TimeoutError:
                    break
                await response.write(_line(line))
            if request.transport is None or request.transport.is_closing():
                break
    except ConnectionResetError:
        pass  # the client went away
    finally:
        logs.remove_sink(system)
        for task in followers.values():
            task.cancel()
        await asyncio.gather(*followers.values(), return_exceptions=True)
    return response


def _line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


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
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise ApiError(501, "this device has no journald (journalctl is not installed)")
    proc = await asyncio.create_subprocess_exec(
        journalctl, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    content_type = NDJSON if fmt == "json" else "text/plain"
    response = web.StreamResponse(headers={"Content-Type": f"{content_type}; charset=utf-8"})
    await response.prepare(request)
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.read(65536):
            await response.write(chunk)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return response


def _safe(field: str, value: str) -> str:
    if not _SAFE_ARG.match(value) or value.startswith("-"):
        raise ApiError(400, f"'{field}' has characters journalctl won't take: {value[:40]!r}")
    return value


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/local/logs", local_logs)
    app.router.add_post("/v2/journal-logs", journal_logs)
