"""The local supervisor API server (aiohttp) on `listenPort`, all interfaces, as the reference.

Middlewares, outermost first: errors (every failure becomes `{status: "failed", message}` with
an honest status code, never a 500 for what a client sent), then auth. Request bodies are
limited to 2 MiB (413 beyond).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from agent import logs
from agent.api import local, streams, v1, v2
from agent.api.access import check_table
from agent.api.auth import Handler, auth_middleware
from agent.api.common import MAX_BODY_BYTES, ApiError, json_response
from agent.api.context import AGENT, HOST, HostActions
from agent.api.metrics import CONTENT_TYPE, AgentMetrics
from agent.errors import CloudError, EngineError, StoreError

if TYPE_CHECKING:
    from agent.daemon import Agent

log = structlog.get_logger("agent.api")
SHUTDOWN_TIMEOUT_S = 2.0


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.status
        return exc.response()
    except web.HTTPException as exc:  # unknown route, wrong method, body too large
        if exc.status < 400:
            raise
        status = exc.status
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = json_response({"status": "failed", "message": exc.reason}, exc.status)
        if headers:
            response.headers.update(headers)
        return response
    except (EngineError, CloudError, StoreError) as exc:
        status = 503
        return json_response({"status": "failed", "message": str(exc)}, 503)
    except Exception as exc:
        _log_unexpected(request, exc)
        return json_response({"status": "failed", "message": f"internal error: {exc!r}"}, 500)
    finally:
        quiet = request.method == "GET" and status < 400  # apps may poll: keep the log readable
        (log.debug if quiet else log.info)(
            "api_request",
            method=request.method,
            path=request.path,  # never the query: it may hold the key
            status=status,
            ms=round((time.monotonic() - started) * 1000, 1),
        )


_SEEN_ERRORS: dict[tuple[str, str], int] = {}  # (exception type, route) -> how many
_MAX_KINDS = 100


def _log_unexpected(request: web.Request, exc: Exception) -> None:
    """A bug, never a client's fault: its stack is logged the first time per kind (exception
    type and route), then only counted, so a client repeating the request can't flood the
    log. The JSON 500 goes back every time."""
    resource = request.match_info.route.resource
    kind = (type(exc).__name__, resource.canonical if resource is not None else "?")
    seen = _SEEN_ERRORS.get(kind, 0)
    if seen == 0 and len(_SEEN_ERRORS) >= _MAX_KINDS:
        return
    _SEEN_ERRORS[kind] = seen + 1
    if seen == 0:
        log.exception("api_error", method=request.method, route=kind[1], error=kind[0])


def make_app(agent: Agent, host: HostActions, metrics: AgentMetrics) -> web.Application:
    app = web.Application(
        middlewares=[errors, auth_middleware(agent.keys, lambda: agent.local_mode)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[AGENT] = agent
    app[HOST] = host

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    v1.add_routes(app)
    v2.add_routes(app)
    local.add_routes(app)
    streams.add_routes(app)
    app.router.add_get("/metrics", prometheus)
    check_table(app)
    return app


class ApiServer:
    def __init__(self, agent: Agent) -> None:
        self.metrics = AgentMetrics(agent)
        self.host = HostActions(agent.host)
        self._app = make_app(agent, self.host, self.metrics)
        self._runner: web.AppRunner | None = None
        self._port = agent.config.listen_port
        self.port: int | None = None

    async def start(self) -> None:
        logs.add_sink(self.metrics.observe)
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, port=self._port, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("api_listening", port=self.port)

    async def stop(self) -> None:
        logs.remove_sink(self.metrics.observe)
        await self.host.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
