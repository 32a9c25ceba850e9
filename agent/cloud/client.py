"""The cloud API, device side: fetch the target state, send the current state.

aiohttp errors and non-2xx answers become `CloudError` here, carrying the HTTP status and a
`Retry-After` (in seconds, as HTTP says — the reference reads it as milliseconds).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent import SUPERVISOR_COMPAT_VERSION, __version__
from agent.errors import CloudError
from agent.httpbody import BodyTooLarge, read_whole

REQUEST_TIMEOUT_S = 59.0
MAX_TARGET_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TargetFetch:
    changed: bool  # False on 304
    etag: str | None
    body: Any = None
    nbytes: int = 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class CloudClient:
    def __init__(
        self, endpoint: str, uuid: str, api_key: str, timeout: float = REQUEST_TIMEOUT_S
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.uuid = uuid
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.requests = 0

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            # the reference's product token first (the cloud knows supervisors by it), then ours
            "User-Agent": f"Supervisor/{SUPERVISOR_COMPAT_VERSION} device-agent/{__version__}",
        }

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch_target(self, etag: str | None) -> TargetFetch:
        url = f"{self.endpoint}/device/v3/{self.uuid}/state"
        headers = self._headers()
        if etag:
            headers["If-None-Match"] = etag
        session = await self._get_session()
        self.requests += 1
        try:
            async with session.get(url, headers=headers) as resp:
                if resp.status == 304:
                    return TargetFetch(changed=False, etag=resp.headers.get("ETag", etag))
                raw = await self._read_ok(resp, "fetch target state")
                try:
                    body = json.loads(raw)
                except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
                    raise CloudError(
                        f"target state is not valid JSON ({exc})",
                        status=resp.status,
                    ) from exc
                return TargetFetch(True, resp.headers.get("ETag"), body, len(raw))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CloudError(f"fetch target state: {_describe(exc)}") from exc

    async def patch_state(self, body: dict[str, Any]) -> None:
        url = f"{self.endpoint}/device/v3/state"
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {**self._headers(), "Content-Type": "application/json"}
        session = await self._get_session()
        self.requests += 1
        self.bytes_sent += len(data)
        try:
            async with session.patch(url, data=data, headers=headers) as resp:
                await self._read_ok(resp, "report state")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CloudError(f"report state: {_describe(exc)}") from exc

    # --- device tags (for the local API's /v2/device/tags) ------------------------------------

    async def _odata(self, method: str, path: str, body: Any = None) -> Any:
        session = await self._get_session()
        self.requests += 1
        data = None if body is None else json.dumps(body).encode()
        headers = {**self._headers(), "Content-Type": "application/json"}
        try:
            async with session.request(
                method, f"{self.endpoint}{path}", data=data, headers=headers
            ) as resp:
                raw = await self._read_ok(resp, f"{method} {path.split('?')[0]}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CloudError(f"{method} {path.split('?')[0]}: {_describe(exc)}") from exc
        if method != "GET":
            return None  # only reads carry an answer we need (pine answers writes variously)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise CloudError(f"{path.split('?')[0]}: answer is not JSON") from exc

    async def device_tags(self) -> list[dict[str, Any]]:
        """`[{id, name, value}]`, as the reference supervisor's API answers."""
        query = f"$select=id,tag_key,value&$filter=device/uuid eq '{self.uuid}'"
        answer = await self._odata("GET", f"/v6/device_tag?{query}")
        rows = answer.get("d", []) if isinstance(answer, dict) else []
        return [
            {"id": r.get("id"), "name": r.get("tag_key"), "value": r.get("value")}
            for r in rows
            if isinstance(r, dict)
        ]

    async def patch_device_tags(self, tags: dict[str, str]) -> None:
        """Create or update this device's tags, as the reference does: one `PATCH
        /device/v3/tags` with `{uuid: {tagKey: value}}`."""
        await self._odata("PATCH", "/device/v3/tags", {self.uuid: tags})

    async def _read_ok(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The whole body of a 2xx answer (up to MAX_TARGET_BYTES); else a CloudError with
        the status, a snippet of the body and Retry-After."""
        try:
            raw = await read_whole(resp, MAX_TARGET_BYTES)
        except BodyTooLarge as exc:
            self.bytes_received += exc.read
            if resp.status < 300:
                raise CloudError(f"{what}: {exc}", status=resp.status) from exc
            raw = b""  # an error answer: its status says enough
        else:
            self.bytes_received += len(raw)
        if resp.status >= 300:
            snippet = raw[:200].decode(errors="replace").strip()
            raise CloudError(
                f"{what}: HTTP {resp.status} {snippet}".strip(),
                status=resp.status,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            )
        return raw


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
