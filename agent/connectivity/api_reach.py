"""The connectivity check: can this device open a TCP (and TLS) connection to its API?

Used when the tunnel is down (as the reference's `connectivityCheckEnabled`), so the device can
tell "my network is fine, only the VPN is blocked" from "I'm offline" between two polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.waits import wait_for


@dataclass(frozen=True)
class ApiReach:
    ok: bool
    detail: str


async def api_reachable(endpoint: str, timeout: float = 10.0) -> ApiReach:
    url = urlsplit(endpoint)
    tls = url.scheme == "https"
    host = url.hostname or ""
    port = url.port or (443 if tls else 80)
    what = f"{'TLS' if tls else 'TCP'} to {host}:{port}"
    context = ssl.create_default_context() if tls else None
    try:
        _reader, writer = await wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host if tls else None),
            timeout,
        )
    except TimeoutError:
        return ApiReach(False, f"{what} timed out after {timeout:.0f} s")
    except ssl.SSLError as exc:
        return ApiReach(False, f"{what}: TLS failed ({exc.reason or exc})")
    except OSError as exc:
        return ApiReach(False, f"{what}: {exc.strerror or exc}")
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return ApiReach(True, f"{what} ok")
