"""Which credentials a pull carries, and how much it will download, asked before pulling.

Credentials (`RegistryCredentials.for_image`): the device's own (`d_<uuid>`, its API key) for
images on the cloud's registry, as balena's supervisor pulls them; config.json
`registryCredentials` for the registries it names; nothing for any other registry — the device's
key is never handed to a registry that is not the cloud's.

The size is best effort by design: it is read from the image manifest (summing its layers),
following a manifest list to this machine's platform and the registry's auth challenge (Basic,
or a Bearer token from its realm) with the same credentials the pull uses. Any failure answers
None, and the pull goes ahead unchecked — a size check must never block an update.
"""

from __future__ import annotations

import base64
import json
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import structlog

from agent.config import DeviceConfig, registry_host
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


@dataclass(frozen=True)
class RegistryAuth:
    """The account a pull from `server` logs in with; `source` says whose it is."""

    server: str  # host[:port], as the image reference names the registry
    username: str
    password: str = field(repr=False)
    source: Literal["device", "config"] = "device"

    def describe(self) -> str:
        if self.source == "device":
            return "the device's credentials"
        return f"the credentials configured for {self.server} (registryCredentials)"


@dataclass(frozen=True)
class RegistryCredentials:
    """Who logs in where. Built from config.json (`RegistryCredentials.of`)."""

    cloud_registry: str | None = None  # registryEndpoint (host[:port])
    uuid: str = ""
    device_api_key: str = field(default="", repr=False)
    configured: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, config: DeviceConfig) -> RegistryCredentials:
        return cls(
            cloud_registry=config.registry_endpoint,
            uuid=config.uuid,
            device_api_key=config.device_api_key,
            configured=dict(config.registry_credentials),
        )

    def for_image(self, ref: str) -> RegistryAuth | None:
        """The credentials a pull of `ref` sends, or None for an anonymous pull."""
        host = image_registry(ref)
        if host in self.configured:
            user, password = self.configured[host]
            return RegistryAuth(host, user, password, "config")
        if host == self.cloud_registry and self.uuid and self.device_api_key:
            return RegistryAuth(host, f"d_{self.uuid}", self.device_api_key, "device")
        return None


def image_registry(ref: str) -> str:
    """The registry host[:port] an image reference pulls from (docker.io when it names none),
    lower case, parsed as the engine parses it."""
    first, sep, _ = split_image_ref(ref)[0].partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return registry_host(first)
    return "docker.io"


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.partition("]")[0] + "]"
    return name.startswith("127.") or name in ("localhost", "[::1]")


def _registry_base(repo: str) -> tuple[str, str]:
    """(base URL, repository path) for a repository name, the way the engine resolves it."""
    first, sep, rest = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "registry-1.docker.io", repo if sep else f"library/{repo}"
    return f"{'http' if _is_loopback(host) else 'https'}://{host}", path


async def download_size(
    ref: str, auth: RegistryAuth | None = None, timeout_s: float = 10.0
) -> int | None:
    """Bytes a pull of `ref` downloads (compressed layers), or None when it can't be told.
    `auth`: the credentials the pull itself uses (RegistryCredentials.for_image)."""
    repo, reference = split_image_ref(ref)
    base, path = _registry_base(repo)
    if auth is not None and auth.server != image_registry(ref):
        auth = None  # credentials only ever go to the registry they are for
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            fetch = _ManifestFetch(session, base, path, auth)
            manifest = await fetch.get(reference)
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
                manifest = await fetch.get(chosen["digest"])
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


class _ManifestFetch:
    """GETs of one repository's manifests, answering the registry's auth challenge once (as
    the engine does: Basic with the credentials, or a Bearer token from the challenge's realm)
    and reusing the answer for the next manifest."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        path: str,
        auth: RegistryAuth | None,
    ) -> None:
        self._session = session
        self._base = base
        self._path = path
        self._auth = auth
        self._authorization: str | None = None
        self._challenge = ""  # the last refusal's WWW-Authenticate

    async def get(self, reference: str) -> dict[str, Any] | None:
        url = f"{self._base}/v2/{self._path}/manifests/{reference}"
        status, data = await self._get(url)
        if status == 401 and self._authorization is None:
            self._authorization = await self._answer(self._challenge)
            if self._authorization is None:
                return None
            status, data = await self._get(url)
        return data if status == 200 else None

    async def _get(self, url: str) -> tuple[int, dict[str, Any] | None]:
        headers = {"Accept": _ACCEPT}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        # never follow a redirect with the credentials (a manifest is served, not redirected)
        async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status != 200:
                self._challenge = resp.headers.get("WWW-Authenticate", "")
                return resp.status, None
            data = json.loads(await read_whole(resp, MAX_MANIFEST_BYTES))
            return 200, data if isinstance(data, dict) else None

    async def _answer(self, challenge: str) -> str | None:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self._auth is None:
                return None
            return _basic(self._auth)
        if scheme != "bearer":
            return None
        params = dict(_CHALLENGE_RE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        token = await self._token(realm, params)
        return None if token is None else f"Bearer {token}"

    async def _token(self, realm: str, params: dict[str, str]) -> str | None:
        headers: dict[str, str] = {}
        if self._auth is not None and _may_send_to(realm, self._auth.server):
            headers["Authorization"] = _basic(self._auth)
        async with self._session.get(
            realm, params=params, headers=headers, allow_redirects=False
        ) as resp:
            if resp.status != 200:
                return None
            body = json.loads(await read_whole(resp, MAX_TOKEN_BYTES))
        if not isinstance(body, dict):
            return None
        token = body.get("token") or body.get("access_token")
        return str(token) if token else None


def _basic(auth: RegistryAuth) -> str:
    login = f"{auth.username}:{auth.password}".encode()
    return "Basic " + base64.b64encode(login).decode("ascii")


def _may_send_to(realm: str, server: str) -> bool:
    """Credentials go to the token realm a registry names (balena's is its API's /auth) over
    https only, or over plain http to the registry's own host on loopback."""
    parts = urlsplit(realm)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.netloc.lower() == server and _is_loopback(server)
