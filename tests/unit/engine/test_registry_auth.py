"""Registry credentials: the device's key goes to the cloud's registry and nowhere else — on the
pull the engine is asked for (X-Registry-Auth) and on the size lookup before it."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from agent.engine import registry
from agent.engine.docker import DockerEngine
from agent.engine.registry import RegistryAuth, RegistryCredentials, download_size
from agent.errors import PullError, RegistryAuthRefused

CLOUD = "registry2.balena-cloud.com"
UUID = "0123456789abcdef0123456789abcdef"
KEY = "device-api-key"
CREDS = RegistryCredentials(
    cloud_registry=CLOUD,
    uuid=UUID,
    device_api_key=KEY,
    configured={"ghcr.io": ("robot", "pat")},
)
DEVICE_AUTH = RegistryAuth(CLOUD, f"d_{UUID}", KEY, "device")


# --- who gets which credentials -------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        f"{CLOUD}/v2/9e2dd224c83bddd78dbe9c0a91f585f4@sha256:{'1' * 64}",
        f"{CLOUD}/v2/abc:latest",
        "REGISTRY2.balena-cloud.COM/v2/abc",  # host names are case-insensitive
    ],
)
def test_images_on_the_cloud_registry_carry_the_device_credentials(ref):
    assert CREDS.for_image(ref) == DEVICE_AUTH


@pytest.mark.parametrize(
    "ref",
    [
        "busybox",
        "library/busybox:1.36",
        "docker.io/balenalib/amd64-debian",
        f"{CLOUD}.evil.example/v2/abc",  # the cloud's name as a prefix of another host
        f"evil.example/{CLOUD}/v2/abc",  # ... or as a path on another registry
        f"{CLOUD}:5000/v2/abc",  # another port is another registry
        "registry2.balena-cloud.co/v2/abc",
        "127.0.0.1:5000/app/main:v1",
        "localhost/app",
    ],
)
def test_other_registries_get_no_credentials(ref):
    assert CREDS.for_image(ref) is None


def test_configured_credentials_go_to_their_registry_only():
    auth = CREDS.for_image("ghcr.io/acme/app:1")
    assert auth == RegistryAuth("ghcr.io", "robot", "pat", "config")
    assert "registryCredentials" in auth.describe()
    assert CREDS.for_image("quay.io/acme/app:1") is None


def test_no_cloud_registry_means_the_key_goes_nowhere():
    none = RegistryCredentials(cloud_registry=None, uuid=UUID, device_api_key=KEY)
    assert none.for_image(f"{CLOUD}/v2/abc") is None


def test_the_key_is_not_in_repr():
    assert KEY not in repr(CREDS) and KEY not in repr(DEVICE_AUTH)


_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_host = st.builds(
    lambda labels, port: ".".join(labels) + (f":{port}" if port else ""),
    st.lists(_label, min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(1, 65535)),
)
_path = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8), min_size=1, max_size=3
)


@given(host=_host, path=_path, tag=st.sampled_from([":v1", "", f"@sha256:{'a' * 64}"]))
def test_no_host_but_the_cloud_registry_ever_gets_the_device_key(host, path, tag):
    auth = CREDS.for_image(f"{host}/{'/'.join(path)}{tag}")
    if auth is not None and auth.source == "device":
        assert auth.server == CLOUD and host.lower() == CLOUD
    if host.lower() != CLOUD and host.lower() != "ghcr.io":
        assert auth is None


# --- the engine is asked with X-Registry-Auth for the cloud's images only ------------------


class FakeDockerd:
    """Just enough of the engine's HTTP API for DockerEngine.pull: records each pull's
    X-Registry-Auth, answers with a progress stream (or `refuse`'s error)."""

    def __init__(self) -> None:
        self.auth_headers: list[str | None] = []
        self.refuse: tuple[int, str] | None = None
        self.stream_error: str | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self.version)
        app.router.add_get("/{v}/version", self.version)
        app.router.add_post("/{v}/images/create", self.create)
        app.router.add_get("/{v}/images/{name:.+}/json", self.inspect)
        return app

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.41", "Version": "fake"})

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.auth_headers.append(request.headers.get("X-Registry-Auth"))
        if self.refuse is not None:
            status, message = self.refuse
            return web.json_response({"message": message}, status=status)
        resp = web.StreamResponse()
        await resp.prepare(request)
        events: list[dict[str, Any]] = [
            {"status": "Pulling fs layer", "id": "l1"},
            {"status": "Downloading", "id": "l1", "progressDetail": {"current": 5, "total": 10}},
            {"status": "Pull complete", "id": "l1"},
        ]
        if self.stream_error is not None:
            events.append({"error": self.stream_error, "errorDetail": {"message": "x"}})
        for event in events:
            await resp.write(json.dumps(event).encode() + b"\r\n")
        await resp.write_eof()
        return resp

    async def inspect(self, request: web.Request) -> web.Response:
        return web.json_response({"Id": "sha256:" + "f" * 64})


@asynccontextmanager
async def fake_engine(credentials: RegistryCredentials) -> AsyncIterator[tuple[FakeDockerd, Any]]:
    dockerd = FakeDockerd()
    server = TestServer(dockerd.app(), host="127.0.0.1")
    await server.start_server()
    engine = DockerEngine(f"tcp://127.0.0.1:{server.port}", timeout=10, credentials=credentials)

    async def pull(ref: str) -> str:
        return await engine.pull(ref, lambda p, b: None, threading.Event())

    try:
        yield dockerd, pull
    finally:
        engine.close()
        await server.close()


def _decoded(header: str | None) -> dict[str, str] | None:
    if header is None:
        return None
    padded = header + "=" * (-len(header) % 4)
    decoded: dict[str, str] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


async def test_the_engine_gets_the_device_credentials_for_the_cloud_registry_only():
    refs = [
        f"{CLOUD}/v2/abc@sha256:{'1' * 64}",
        "busybox:latest",
        "127.0.0.1:5000/app/main:v1",
        f"{CLOUD}.evil.example/v2/abc:v1",
        "ghcr.io/acme/app:1",
    ]

    async def main() -> list[dict[str, str] | None]:
        async with fake_engine(CREDS) as (dockerd, pull):
            for ref in refs:
                assert await pull(ref) == "sha256:" + "f" * 64
            return [_decoded(h) for h in dockerd.auth_headers]

    sent = await main()
    assert sent == [
        {"username": f"d_{UUID}", "password": KEY, "serveraddress": CLOUD},
        None,
        None,
        None,
        {"username": "robot", "password": "pat", "serveraddress": "ghcr.io"},
    ]


@pytest.mark.parametrize(
    ("refusal", "stream_error", "ref", "expected"),
    [
        (  # docker-registry (htpasswd) turning a wrong password down
            (500, "unauthorized: authentication required"),
            None,
            f"{CLOUD}/v2/abc:v1",
            "registry refused the device's credentials",
        ),
        (  # a token server turning them down
            (401, "Head https://registry2/v2/x: unauthorized: incorrect username or password"),
            None,
            f"{CLOUD}/v2/abc:v1",
            "registry refused the device's credentials",
        ),
        (
            (500, "unauthorized: authentication required"),
            None,
            "ghcr.io/acme/app:1",
            "registry refused the credentials configured for ghcr.io (registryCredentials)",
        ),
        (
            (500, 'Get "http://127.0.0.1:5000/v2/x/manifests/v1": no basic auth credentials'),
            None,
            "127.0.0.1:5000/x:v1",
            "the registry 127.0.0.1:5000 refused an anonymous pull",
        ),
        (None, "unauthorized: authentication required", f"{CLOUD}/v2/abc:v1", "device's"),
    ],
)
async def test_a_refusal_is_a_registry_auth_error_that_says_whose_credentials(
    refusal, stream_error, ref, expected
):
    async def main() -> None:
        async with fake_engine(CREDS) as (dockerd, pull):
            dockerd.refuse, dockerd.stream_error = refusal, stream_error
            await pull(ref)

    with pytest.raises(RegistryAuthRefused, match=expected.replace("(", r"\(").replace(")", r"\)")):
        await main()


async def test_other_pull_failures_stay_plain_pull_errors():
    async def main() -> None:
        async with fake_engine(CREDS) as (dockerd, pull):
            dockerd.refuse = (500, "Get https://x/v2/: dial tcp: connection refused")
            await pull(f"{CLOUD}/v2/abc:v1")

    with pytest.raises(PullError) as caught:
        await main()
    assert not isinstance(caught.value, RegistryAuthRefused)


# --- the size lookup answers the registry's challenge with the same credentials -------------

LAYERS: list[dict[str, Any]] = [{"digest": f"sha256:{i:064x}", "size": 1000 + i} for i in range(3)]
MANIFEST = {"schemaVersion": 2, "layers": LAYERS}
SIZE = sum(layer["size"] for layer in LAYERS)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class FakeRegistry:
    """A registry asking for Basic auth (htpasswd-style) or for a Bearer token from a realm
    that itself wants Basic auth (balena's and Docker Hub's style). Records every
    Authorization header it is shown."""

    def __init__(self, mode: str, user: str, password: str) -> None:
        self.mode = mode
        self.login = _basic(user, password)
        self.seen: list[str | None] = []
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/{repo:.+}/manifests/{ref}", self.manifest)
        app.router.add_get("/token", self.token)
        return app

    async def manifest(self, request: web.Request) -> web.Response:
        given_auth = request.headers.get("Authorization")
        self.seen.append(given_auth)
        wanted = self.login if self.mode == "basic" else "Bearer good-token"
        if given_auth != wanted:
            challenge = (
                'Basic realm="registry"'
                if self.mode == "basic"
                else f'Bearer realm="http://127.0.0.1:{self.port}/token",service="reg",'
                'scope="repository:app/main:pull"'
            )
            return web.json_response({}, status=401, headers={"WWW-Authenticate": challenge})
        return web.json_response(MANIFEST)

    async def token(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != self.login:
            return web.json_response({"details": "incorrect username or password"}, status=401)
        return web.json_response({"token": "good-token"})


async def _size_via(mode: str, auth_for: Callable[[str], RegistryAuth | None]) -> tuple[Any, list]:
    async def main() -> tuple[int | None, list[str | None]]:
        fake = FakeRegistry(mode, "d_dev", "right")
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        assert server.port is not None
        fake.port = server.port
        try:
            ref = f"127.0.0.1:{server.port}/app/main:v1"
            return await download_size(ref, auth_for(f"127.0.0.1:{server.port}")), fake.seen
        finally:
            await server.close()

    result: tuple[Any, list] = await main()
    return result


@pytest.mark.parametrize("mode", ["basic", "bearer"])
async def test_the_size_of_a_private_image_is_read_with_the_pull_credentials(mode):
    size, _ = await _size_via(mode, lambda host: RegistryAuth(host, "d_dev", "right"))
    assert size == SIZE


@pytest.mark.parametrize("mode", ["basic", "bearer"])
async def test_refused_or_missing_credentials_leave_the_size_unknown(mode):
    assert (await _size_via(mode, lambda host: RegistryAuth(host, "d_dev", "wrong")))[0] is None
    size, seen = await _size_via(mode, lambda host: None)
    assert size is None
    assert all(header is None for header in seen)  # anonymous: nothing was sent


async def test_credentials_for_another_registry_are_never_shown_to_this_one():
    size, seen = await _size_via("basic", lambda host: RegistryAuth(CLOUD, "d_dev", "right"))
    assert size is None
    assert seen == [None]


def test_credentials_go_to_a_plain_http_realm_only_on_the_registry_host_itself():
    assert registry._may_send_to("https://api.balena-cloud.com/auth/v1/token", CLOUD)
    assert registry._may_send_to("http://127.0.0.1:5000/token", "127.0.0.1:5000")
    assert not registry._may_send_to("http://api.balena-cloud.com/auth/v1/token", CLOUD)
    assert not registry._may_send_to("http://127.0.0.1:6000/token", "127.0.0.1:5000")
    assert not registry._may_send_to("ftp://x/token", CLOUD)
