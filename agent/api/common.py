"""Shared pieces of the local API: answers, errors, request parsing and scope checks.

Every error is `{"status": "failed", "message": ...}` with a status code that says whose fault
it is: 400 for a bad request (the message says what is wrong), 401/403 for keys, 404 for an
unknown app or service, 423 while an update lock is held, 501 for what this device doesn't
have, 503 when the engine or the cloud can't be reached.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from agent.api.keys import Scope

MAX_BODY_BYTES = 2 * 1024 * 1024
SCOPE_KEY = web.RequestKey("scope", Scope)
_DECIMAL = re.compile(r"[0-9]{1,12}")  # ASCII only: '²'.isdigit() and '٣'.isdigit() are true


class ApiError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body  # a different JSON body (v1 reboot/shutdown speak {Data, Error})

    def response(self) -> web.Response:
        body = self.body if self.body is not None else {"status": "failed", "message": self.message}
        return json_response(body, self.status)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def text_response(text: str = "OK", status: int = 200) -> web.Response:
    """The reference answers some routes with bare text (`OK`, a key); so do we."""
    return web.Response(text=text, status=status, content_type="text/plain")


def success(**fields: Any) -> web.Response:
    return json_response({"status": "success", **fields})


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request body as an object: JSON, or form-encoded (as the reference also accepts).
    An empty body is `{}`."""
    if not request.body_exists:  # not can_read_body: false once the auth middleware read it
        return {}
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(
            415,
            f"compressed request bodies are not accepted (Content-Encoding: "
            f"{encoding[:40]!r}); send the body as it is",
        )
    try:
        raw = await request.read()
    except web.RequestPayloadError as exc:  # e.g. `Content-Encoding: gzip` on a plain body
        raise ApiError(400, f"request body could not be read: {exc}".replace("\n", " ")) from exc
    if not raw.strip():
        return {}
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
        except UnicodeDecodeError as exc:
            raise ApiError(400, "form body is not valid UTF-8") from exc
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # `[[[[...` deeper than the parser's stack
        raise ApiError(400, "request body is not valid JSON: nested too deeply") from exc
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(body).__name__}")
    return body


_TRUE = {True, "1", "true", "on", "yes"}
_FALSE = {False, None, "0", "false", "off", "no", ""}


def flag(body: dict[str, Any], name: str) -> bool:
    """A boolean field (`true`/`false`, `1`/`0`, `"on"`...); absent is false."""
    value = body.get(name)
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, dict | list):
        raise ApiError(400, f"'{name}' must be true or false, got {json.dumps(value)}")
    if key in _TRUE and not (isinstance(key, float)):
        return True
    if key in _FALSE and not (isinstance(key, float)):
        return False
    raise ApiError(400, f"'{name}' must be true or false, got {json.dumps(value)}")


def decimal(text: str) -> int | None:
    """A plain ASCII decimal (`"42"`), or None: no sign, no spaces, no `"²"` or other Unicode
    digits that `str.isdigit` accepts and `int` refuses."""
    return int(text) if _DECIMAL.fullmatch(text) else None


def app_id_of(value: Any, what: str = "app id") -> int:
    """A positive integer app id from a path segment or a body field."""
    if isinstance(value, bool):
        raise ApiError(400, f"Invalid {what}: {json.dumps(value)}")
    if isinstance(value, int) and 0 < value < 2**31:
        return value
    number = decimal(value) if isinstance(value, str) else None
    if number is not None and 0 < number < 2**31:
        return number
    if value is None:
        raise ApiError(400, f"Missing {what}")
    raise ApiError(400, f"Invalid {what}: {json.dumps(value)[:60]}")


def optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be a string")
    return value


def optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and (number := decimal(value)) is not None:
        value = number
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 2**31:
        raise ApiError(400, f"'{name}' must be a non-negative integer")
    return value


def scope_of(request: web.Request) -> Scope:
    return request[SCOPE_KEY]


def require_app_scope(request: web.Request, app_id: int) -> None:
    """401 when the request's key is scoped to another app (as the reference answers). The
    access table (agent/api/access.py) already enforced this before the handler ran; this is
    the same rule again where an app is looked up, never a different one."""
    if not scope_of(request).allows(app_id):
        raise ApiError(401, "Unauthorized: this API key is scoped to another app")
