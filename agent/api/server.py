"""The local supervisor API server (aiohttp) on `listenPort`, all interfaces as the reference
(or only `listenAddress`).

Middlewares, outermost first: errors (every failure becomes `{status: "failed", message}` with
an honest status code, never a 500 for what a client sent), then auth. Request bodies are
limited to 2 MiB (413 beyond).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog
from aiohttp import web

from agent.api import local_mode, streams, v1, v2
from agent.api.access import check_table
from agent.api.auth import Handler, auth_middleware
from agent.api.common import MAX_BODY_BYTES, ApiError, json_response
from agent.api.context import HOST, HostActions
from agent.api.metrics import CONTENT_TYPE, AgentMetrics
from agent.api.ports import CONTEXT, ApiContext
from agent.errors import CloudError, EngineError, StoreError
from agent.events.bus import Bus

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
    except ConnectionResetError:  # the client left while we read its body: nobody to answer
        status = 499
        return json_response({"status": "failed", "message": "the client went away"}, 400)
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


class HttpLog(logging.Logger):
    """aiohttp's own log (a request it can't even parse: a control character in a header, a
    Content-Encoding it can't decode; it answers those 400 itself): one structlog line per
    kind, never a traceback per request."""

    def __init__(self) -> None:
        super().__init__("agent.api.http", logging.WARNING)  # not its debug chatter
        self.seen: dict[str, int] = {}

    def _log(  # every Logger method ends here
        self,
        level: int,
        msg: object,
        args: Any,
        exc_info: Any = None,
        extra: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
    ) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if exc is None and exc_info:
            exc = sys.exc_info()[1]
        kind = type(exc).__name__ if exc is not None else str(msg)[:80]
        seen = self.seen.get(kind, 0)
        if seen == 0 and len(self.seen) >= _MAX_KINDS:
            return
        self.seen[kind] = seen + 1
        if seen == 0:
            detail = str(exc) if exc is not None else str(msg) % args if args else str(msg)
            log.warning(
                "api_bad_http_request",
                kind=kind,
                detail=" ".join(detail.split())[:200],
                logged="once per kind",
            )


def runner_options() -> dict[str, Any]:
    """How the server runs the app. No access log (the errors middleware logs requests); aiohttp's
    own log goes through HttpLog; request bodies are never decompressed: no client of this API
    compresses them, and aiohttp would inflate them on the event loop (a small bomb blocks it)
    and, for a bad deflate body arriving after its headers, never finish reading it."""
    return {"access_log": None, "logger": HttpLog(), "auto_decompress": False}


def make_app(ctx: ApiContext, host: HostActions, metrics: AgentMetrics) -> web.Application:
    app = web.Application(
        middlewares=[
            errors,
            auth_middleware(
                ctx.keys,
                lambda: ctx.targets.local_mode,
                ctx.settings.strict_api_keys,
            ),
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONTEXT] = ctx
    app[HOST] = host

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=await metrics.scrape(), headers={"Content-Type": CONTENT_TYPE})

    v1.add_routes(app)
    v2.add_routes(app)
    local_mode.add_routes(app)
    streams.add_routes(app)
    app.router.add_get("/metrics", prometheus)
    check_table(app)
    return app


class ApiServer:
    def __init__(self, ctx: ApiContext, bus: Bus) -> None:
        """`bus`: the agent's, whose events /metrics counts."""
        self.metrics = AgentMetrics(ctx, bus)
        self.host = HostActions(ctx.host)
        self._app = make_app(ctx, self.host, self.metrics)
        self._runner: web.AppRunner | None = None
        self._port = ctx.settings.listen_port
        self._address = ctx.settings.listen_address  # None: every interface
        self.port: int | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, **runner_options())
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._address, self._port, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("api_listening", address=self._address or "*", port=self.port)

    async def stop(self) -> None:
        await self.host.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
