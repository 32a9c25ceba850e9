"""Ask an image's registry how much a pull will download, before pulling.

Best effort by design: the size is read from the image manifest (summing its layers), following
a manifest list to this machine's platform and an anonymous Bearer-token challenge. Any failure
answers None, and the pull goes ahead unchecked — a size check must never block an update.
"""

from __future__ import annotations

import json
import platform
import re
from typing import Any

import aiohttp
import structlog

from agent.httpbody import BodyTooLarge, read_whole
from agent.model.current import split_image_ref

log = structlog.get_logger("agent.registry")

_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what registries themselves accept for a manifest
MAX_TOKEN_BYTES = 1024 * 1024


def _registry_base(repo: str) -> tuple[str, str]:
    """(base URL, repository path) for a repository name, the way the engine resolves it."""
    first, sep, rest = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "registry-1.docker.io", repo if sep else f"library/{repo}"
    plain = host.startswith(("127.", "localhost")) or host == "[::1]"
    return f"{'http' if plain else 'https'}://{host}", path


async def download_size(ref: str, timeout_s: float = 10.0) -> int | None:
    """Bytes a pull of `ref` downloads (compressed layers), or None when it can't be told."""
    repo, reference = split_image_ref(ref)
    base, path = _registry_base(repo)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            manifest = await _get_manifest(session, base, path, reference)
            if manifest is None:
                return None
            if "manifests" in manifest:  # a list: pick this machine's platform
                arch = _ARCH.get(platform.machine(), platform.machine())
                chosen = next(
                    (
                        m
                        for m in manifest["manifests"]
                        if (m.get("platform") or {}).get("architecture") == arch
                    ),
                    None,
                )
                if chosen is None:
                    return None
                manifest = await _get_manifest(session, base, path, chosen["digest"])
                if manifest is None:
                    return None
            layers = manifest.get("layers") or []
            return sum(int(layer.get("size", 0)) for layer in layers) or None
    except (
        TimeoutError,
        aiohttp.ClientError,
        BodyTooLarge,
        ValueError,  # incl. JSON errors
        RecursionError,  # JSON nested too deep
        KeyError,
        TypeError,
        AttributeError,  # a list entry that isn't an object
    ) as exc:
        log.debug("registry_size_unknown", image=ref, error=str(exc))
        return None


async def _get_manifest(
    session: aiohttp.ClientSession, base: str, path: str, reference: str
) -> dict[str, Any] | None:
    url = f"{base}/v2/{path}/manifests/{reference}"
    headers = {"Accept": _ACCEPT}
    async with session.get(url, headers=headers) as resp:
        if resp.status == 401:
            token = await _anonymous_token(session, resp.headers.get("WWW-Authenticate", ""))
            if token is None:
                return None
            headers["Authorization"] = f"Bearer {token}"
            async with session.get(url, headers=headers) as again:
                if again.status != 200:
                    return None
                data = json.loads(await read_whole(again, MAX_MANIFEST_BYTES))
                return data if isinstance(data, dict) else None
        if resp.status != 200:
            return None
        data = json.loads(await read_whole(resp, MAX_MANIFEST_BYTES))
        return data if isinstance(data, dict) else None


async def _anonymous_token(session: aiohttp.ClientSession, challenge: str) -> str | None:
    if not challenge.lower().startswith("bearer "):
        return None
    params = dict(_CHALLENGE_RE.findall(challenge))
    realm = params.pop("realm", None)
    if not realm:
        return None
    async with session.get(realm, params=params) as resp:
        if resp.status != 200:
            return None
        body = json.loads(await read_whole(resp, MAX_TOKEN_BYTES))
    if not isinstance(body, dict):
        return None
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None
