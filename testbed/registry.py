"""A local docker-registry (distribution), optionally behind htpasswd (Basic) auth, and a
rate-limiting, cuttable TCP proxy in front of it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import docker

from ._util import (
    TestbedError,
    TestbedUnavailable,
    daemon_env,
    find_binary,
    free_port,
    log_tail,
    read_pid,
    remove_tree,
    terminate,
)
from .images import _MANIFEST_TYPES, PublishedImage, build_image, push

T = TypeVar("T")
_CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: testbed-not-secret
"""
_AUTH = """\
auth:
  htpasswd:
    realm: testbed-registry
    path: {htpasswd}
"""


def htpasswd_line(user: str, password: str) -> str:
    """One bcrypt htpasswd entry (distribution accepts bcrypt only), made by apache2-utils."""
    if ":" in user or "\n" in user or "\n" in password:
        raise ValueError(f"unusable htpasswd user {user!r}")
    binary = find_binary("htpasswd", "apache2-utils")
    try:
        done = subprocess.run(
            [binary, "-niB", "-C", "4", user],  # cost 4: fast to make and to check
            input=password.encode(),
            capture_output=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TestbedUnavailable(f"cannot run {binary}: {exc}") from exc
    return done.stdout.decode().strip()


def publish_private(
    client: docker.DockerClient,
    registry: Registry,
    user: str,
    repo: str,
    tag: str,
    marker: str,
    payload_mb: float = 0,
) -> PublishedImage:
    """testbed.publish for an auth registry: log `client` in as `user` (one of its users),
    build, push, read the manifest with the same account, drop the local copy."""
    password = (registry.users or {}).get(user)
    if password is None:
        raise TestbedError(f"publish_private: {user!r} is not a user of {registry!r}")
    client.login(user, password, registry=registry.address, reauth=True)
    image_id = build_image(client, repo, tag, marker=marker, payload_mb=payload_mb)
    ref_by_digest = push(client, image_id, registry.address, repo, tag)
    digest = ref_by_digest.partition("@")[2]
    login = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{registry.url}/v2/{repo}/manifests/{digest}",
        headers={"Accept": _MANIFEST_TYPES, "Authorization": f"Basic {login}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        manifest: dict[str, Any] = json.load(response)
    size = sum(int(layer["size"]) for layer in manifest.get("layers", []))
    client.images.remove(image_id, force=True)
    return PublishedImage(ref_by_digest, f"{registry.address}/{repo}:{tag}", digest, size, image_id)


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


class Registry:
    """docker-registry serving root/storage on 127.0.0.1:port (config root/config.yml,
    log root/registry.log). stop() then start() reuses the same port and storage.

    With `users` ({name: password}) it asks for Basic auth (htpasswd, root/htpasswd) on every
    request, as a private registry does; set_users() changes them (and restarts it: the
    registry reads the file once)."""

    def __init__(
        self,
        root: Path | str | None = None,
        port: int = 0,
        users: dict[str, str] | None = None,
    ) -> None:
        self._root = Path(root).resolve() if root is not None else None
        self._port = port
        self._users = dict(users) if users is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            raise TestbedError("Registry has no root yet: call start(root)")
        return self._root

    @property
    def port(self) -> int:
        if not self._port:
            raise TestbedError("Registry has no port yet: call start()")
        return self._port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pidfile(self) -> Path:
        return self.root / "registry.pid"

    @property
    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        if self._root is None:
            return None
        return read_pid(self.pidfile, str(self.root))

    @property
    def users(self) -> dict[str, str] | None:
        return None if self._users is None else dict(self._users)

    def _ready_status(self) -> int:
        return 200 if self._users is None else 401  # auth: /v2/ answers with a challenge

    def is_running(self) -> bool:
        return self.pid is not None and _http_status(f"{self.url}/v2/") == self._ready_status()

    def set_users(self, users: dict[str, str]) -> None:
        """Replace the accounts of an auth registry; a running one restarts to read them."""
        if self._users is None:
            raise TestbedError("set_users: this registry was started without auth")
        self._users = dict(users)
        if self.pid is not None:
            self.restart()

    def start(
        self, root: Path | str | None = None, port: int = 0, timeout: float = 30.0
    ) -> Registry:
        """Start serving; root/port default to those of the previous start (port 0 = pick)."""
        if root is not None:
            self._root = Path(root).resolve()
        if port:
            self._port = port
        binary = find_binary("docker-registry", "docker-registry")
        if self.pid is not None:
            raise TestbedError(f"a registry is already running on {self.root} (pid {self.pid})")
        self.root.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._port else 3
        for attempt in range(attempts):
            if not self._port or attempt:
                self._port = free_port()
            try:
                self._launch(binary, timeout)
                return self
            except TestbedError:
                if attempt == attempts - 1:
                    raise
        return self  # unreachable

    def _launch(self, binary: str, timeout: float) -> None:
        config = self.root / "config.yml"
        text = _CONFIG.format(storage=self.root / "storage", port=self._port)
        if self._users is not None:
            htpasswd = self.root / "htpasswd"
            lines = [htpasswd_line(user, pw) for user, pw in sorted(self._users.items())]
            htpasswd.write_text("".join(f"{line}\n" for line in lines))
            text += _AUTH.format(htpasswd=htpasswd)
        config.write_text(text)
        self._log = open(self.root / "registry.log", "ab")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=daemon_env(),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise TestbedUnavailable(f"cannot run {binary}: {exc}") from exc
        self.pidfile.write_text(str(self._proc.pid))
        deadline = time.monotonic() + timeout
        while _http_status(f"{self.url}/v2/") != self._ready_status():
            failed = self._proc.poll() is not None or time.monotonic() > deadline
            if failed:
                self.stop()
                log = self.root / "registry.log"
                raise TestbedError(
                    f"docker-registry did not come up on {self.address}; "
                    f"{log} ends with:\n{log_tail(log)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid
        if pid is not None:
            proc = self._proc if self._proc is not None and self._proc.pid == pid else None
            terminate(pid, proc, timeout)
        elif self._proc is not None:
            self._proc.poll()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        with contextlib.suppress(OSError):
            self.pidfile.unlink()

    def restart(self) -> Registry:
        self.stop()
        return self.start()

    def purge(self) -> None:
        if self._root is not None:
            self.stop()
            remove_tree(self.root)

    def __enter__(self) -> Registry:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Registry(root={self._root}, port={self._port}, pid={self.pid})"


class _Bucket:
    """Token bucket shared by every downstream pump; lives on the proxy's event loop."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.level = 0.0
        self.stamp = time.monotonic()

    def set_rate(self, rate: float | None) -> None:
        self._refill()
        if self.rate is None:
            self.level, self.stamp = 0.0, time.monotonic()
        self.rate = rate

    def _refill(self) -> None:
        now = time.monotonic()
        if self.rate is not None:
            burst = self.rate * 0.05
            self.level = min(burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def chunk(self) -> int:
        return 65536 if self.rate is None else max(256, min(65536, int(self.rate / 50)))

    async def take(self, n: int) -> None:
        """Wait until the bucket is not in debt, then take `n` (possibly going into debt).
        Sleeps in short steps so a rate change applies promptly."""
        while self.rate is not None:
            self._refill()
            if self.level >= 0:
                self.level -= n
                return
            await asyncio.sleep(min(0.05, -self.level / self.rate))


class ThrottledProxy:
    """TCP proxy on 127.0.0.1:<free port> → `target` ("127.0.0.1:PORT" or anything with
    .address). Limits registry→client bytes to rate_bps (None = unlimited) across all
    connections; cut() resets all connections and refuses new ones until restore()."""

    def __init__(self, target: Any, rate_bps: float | None = None, port: int = 0) -> None:
        self._target = target
        self._port = port
        self._bucket = _Bucket(rate_bps)
        self._cut = False
        self._conns: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.bytes_down = 0  # registry→client bytes delivered so far
        self.bytes_up = 0  # client→registry bytes forwarded so far
        self.connections_total = 0

    @property
    def address(self) -> str:
        if not self._port:
            raise TestbedError("ThrottledProxy not started")
        return f"127.0.0.1:{self._port}"

    @property
    def rate_bps(self) -> float | None:
        return self._bucket.rate

    @property
    def is_cut(self) -> bool:
        return self._cut

    def _target_hostport(self) -> tuple[str, int]:
        address = self._target if isinstance(self._target, str) else self._target.address
        host, _, port = address.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise TestbedError(f"ThrottledProxy only forwards to 127.0.0.1, not {address}")
        return "127.0.0.1", int(port)

    def start(self) -> ThrottledProxy:
        if self._thread is not None:
            return self
        self._target_hostport()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="throttled-proxy", daemon=True
        )
        self._thread.start()
        self._server = self._call(
            asyncio.start_server(self._handle, "127.0.0.1", self._port, reuse_address=True)
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            self._abort_all()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._server = None

    def set_rate(self, rate_bps: float | None) -> None:
        if rate_bps is not None and rate_bps <= 0:
            raise ValueError("rate_bps must be positive or None")
        self._run(lambda: self._bucket.set_rate(rate_bps))

    def cut(self) -> None:
        """Reset every open connection and refuse (reset) new ones until restore()."""

        def do_cut() -> None:
            self._cut = True
            self._abort_all()

        self._run(do_cut)

    def restore(self) -> None:
        self._run(lambda: setattr(self, "_cut", False))

    # -- event-loop side ---------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise TestbedError("ThrottledProxy not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _run(self, fn: Callable[[], object]) -> None:
        if self._loop is None:  # not started: nothing to synchronise with
            fn()
            return

        async def wrapper() -> None:
            fn()

        self._call(wrapper())

    def _abort_all(self) -> None:
        for writer in list(self._conns):
            writer.transport.abort()
        self._conns.clear()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        if self._cut:
            cwriter.transport.abort()
            return
        try:
            ureader, uwriter = await asyncio.open_connection(*self._target_hostport())
        except OSError:
            cwriter.transport.abort()  # registry down: the client sees a reset
            return
        pair = {cwriter, uwriter}
        self._conns.update(pair)
        try:
            await asyncio.gather(
                self._pump(creader, uwriter, pair, throttled=False),
                self._pump(ureader, cwriter, pair, throttled=True),
            )
        finally:
            for writer in pair:
                if self._cut:
                    writer.transport.abort()
                else:
                    writer.close()
            self._conns.difference_update(pair)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: set[asyncio.StreamWriter],
        *,
        throttled: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(self._bucket.chunk() if throttled else 65536)
                if not data:
                    break
                if throttled:
                    await self._bucket.take(len(data))
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
                if writer.transport.is_closing():  # not counted once cut
                    continue
                if throttled:
                    self.bytes_down += len(data)
                else:
                    self.bytes_up += len(data)
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (OSError, asyncio.IncompleteReadError):
            for other in pair:  # one side broke: tear down both
                other.transport.abort()

    def __enter__(self) -> ThrottledProxy:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._port or None
        return f"ThrottledProxy(port={port}, target={self._target!r}, rate={self.rate_bps})"
