"""The engine adapter: the only module that imports the docker SDK.

The SDK is synchronous, so every call runs in a worker thread (`asyncio.to_thread`) and the
event loop never blocks on the engine. docker/requests exceptions are translated into the
agent's own (`agent.errors`) right here, where they enter.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import http.client
import json
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import docker
import docker.auth
import docker.errors
import requests.exceptions
import structlog
import urllib3.exceptions

from agent.engine.compose import ContainerSpec
from agent.engine.port import CONNECTED
from agent.engine.pull import PullProgress, PullStreamError
from agent.engine.registry import (
    RegistryAuth,
    RegistryCredentials,
    download_size,
    image_registry,
)
from agent.errors import (
    Conflict,
    EngineError,
    EngineUnavailable,
    NotFound,
    PullError,
    RegistryAuthRefused,
)
from agent.model import (
    ContainerState,
    ContainerStatus,
    CurrentState,
    ImageState,
    NetworkState,
    VolumeState,
)
from agent.model.compose_options import IpamPool
from agent.model.current import (
    LABEL_APP_ID,
    LABEL_APP_UUID,
    LABEL_CONFIG_HASH,
    LABEL_IMAGE_ID,
    LABEL_IMAGE_REF,
    LABEL_RELEASE_ID,
    LABEL_RELEASE_UUID,
    LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME,
    LABEL_SUPERVISED,
    EngineConfig,
    network_app_uuid,
    normalize_refs,
    split_image_ref,
    volume_app_id,
)

log = structlog.get_logger("agent.engine")

T = TypeVar("T")
SUPERVISED_FILTER = {"label": f"{LABEL_SUPERVISED}=true"}
_EXIT_RE = re.compile(r"Exited \((-?\d+)\)")
_HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)")


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn SDK / transport exceptions into agent errors, naming the operation."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise NotFound(f"{what}: {exc.explanation or exc}") from exc
    except docker.errors.APIError as exc:
        code = exc.status_code
        message = f"{what}: {exc.explanation or exc}"
        if code == 409:
            raise Conflict(message) from exc
        raise EngineError(message) from exc
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"{what}: {exc}") from exc
    except (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError) as exc:
        raise EngineUnavailable(f"{what}: engine not reachable ({exc})") from exc
    except (urllib3.exceptions.HTTPError, http.client.HTTPException) as exc:
        # a stream cut mid-read (dockerd restarting) surfaces from urllib3, not requests
        raise EngineUnavailable(f"{what}: connection to the engine lost ({exc})") from exc
    except requests.exceptions.RequestException as exc:
        raise EngineError(f"{what}: {exc}") from exc


# Pulls hold a worker thread for as long as they download: they get their own threads, so they
# neither queue behind each other in asyncio's small default pool (cpu count + 4) nor starve the
# engine reads, lock checks and API handlers that use it meanwhile.
PULL_WORKERS = 8
# connections kept to the engine: the pulls plus the calls that run beside them
MAX_POOL_SIZE = 16


class DockerEngine:
    def __init__(
        self,
        host: str,
        timeout: float = 60.0,
        credentials: RegistryCredentials | None = None,
    ) -> None:
        self.host = host
        self._timeout = timeout
        # who logs in to which registry on a pull (registry.RegistryCredentials)
        self.credentials = credentials or RegistryCredentials()
        self._api: docker.APIClient | None = None
        self._lock = threading.Lock()
        self._pulls: ThreadPoolExecutor | None = None
        self._inspected: dict[str, EngineConfig] = {}  # container id -> (takeover) inspect
        # networks that are never an app's (the supervisor network, engine/supnet.py)
        self.reserved_networks: set[str] = set()
        # supervised container id -> the exit code of its latest `die` event: once the engine
        # has restarted a container, its inspect says ExitCode 0 and only this remembers why
        # it went (read by the probation watch, reconcile/rollback.py)
        self._exit_codes: dict[str, int] = {}
        self._dies: dict[str, int] = {}  # supervised container id -> `die` events seen

    @property
    def api(self) -> docker.APIClient:
        with self._lock:
            if self._api is None:
                with _translated("connect"):
                    self._api = docker.APIClient(
                        base_url=self.host,
                        timeout=self._timeout,
                        version="auto",
                        max_pool_size=MAX_POOL_SIZE,
                    )
            return self._api

    async def _run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            with _translated(what):
                return fn(*args, **kwargs)

        return await asyncio.to_thread(call)

    async def _call(self, what: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`method`, an unbound `docker.APIClient` method, on the client in a worker thread:
        the client (built on first use, a synchronous GET /version) is never touched on the
        loop, nor is the lock that guards its construction."""
        return await self._run(what, lambda: method(self.api, *args, **kwargs))

    def close(self) -> None:
        if self._pulls is not None:
            self._pulls.shutdown(wait=False, cancel_futures=True)
            self._pulls = None
        if self._api is not None:
            self._api.close()

    def _pull_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pulls is None:
                self._pulls = ThreadPoolExecutor(PULL_WORKERS, thread_name_prefix="pull")
            return self._pulls

    # --- reading ------------------------------------------------------------------------------

    async def version(self) -> dict[str, Any]:
        return await self._run("version", lambda: self.api.version())

    async def info(self) -> dict[str, Any]:
        return await self._run("info", lambda: self.api.info())

    async def current_state(self, managed_image_ids: frozenset[str]) -> CurrentState:
        """One snapshot of everything the agent owns, from list calls only (no inspects)."""

        def read() -> CurrentState:
            states = self._list_containers()
            with _translated("list images"):
                images = self.api.images()
            with _translated("list volumes"):
                volumes = self.api.volumes(filters=SUPERVISED_FILTER).get("Volumes") or []
            with _translated("list networks"):
                networks = self.api.networks(filters=SUPERVISED_FILTER)
            return CurrentState(
                containers=tuple(self._with_engine_config(states)),
                images=tuple(
                    ImageState(
                        id=img["Id"],
                        refs=normalize_refs(
                            (img.get("RepoTags") or []) + (img.get("RepoDigests") or [])
                        ),
                        size=int(img.get("Size") or 0),
                        managed=img["Id"] in managed_image_ids,
                    )
                    for img in images
                ),
                volumes=tuple(_volume_state(v) for v in volumes),
                networks=tuple(
                    _network_state(n) for n in networks if n["Name"] not in self.reserved_networks
                ),
            )

        return await asyncio.to_thread(read)

    async def containers(self) -> tuple[ContainerState, ...]:
        """The supervised containers from one list call: their status, health and exit code
        as the list shows them (no inspects, no engine config of taken-over containers)."""

        return tuple(await asyncio.to_thread(self._list_containers))

    def _list_containers(self) -> list[ContainerState]:
        """The supervised containers as one list call shows them (in a worker thread)."""
        with _translated("list containers"):
            raw = self.api.containers(all=True, filters=SUPERVISED_FILTER)
        return [c for c in (_container_state(r) for r in raw) if c is not None]

    def _with_engine_config(self, states: list[ContainerState]) -> Iterator[ContainerState]:
        """Containers without our config-hash label (another supervisor made them, a takeover)
        get their inspect and their image's, to be judged by what they run (engine/adopt.py).
        Cached per container: what a container was created with never changes."""
        seen = {c.id for c in states}
        for gone in self._inspected.keys() - seen:
            self._inspected.pop(gone, None)  # (two reads may run at once)
        for c in states:
            if c.config_hash is not None:
                yield c
                continue
            config = self._inspected.get(c.id)
            if config is None:
                try:
                    with _translated("inspect container"):
                        info = self.api.inspect_container(c.id)
                    with _translated("inspect image"):
                        image = self.api.inspect_image(info["Image"])
                except NotFound:  # gone meanwhile: judged on the next pass
                    yield c
                    continue
                config = self._inspected[c.id] = EngineConfig(info, image)
            yield dataclasses.replace(c, engine_config=config)

    async def image_id(self, ref: str) -> str | None:
        try:
            info = await self._call(f"inspect image {ref}", docker.APIClient.inspect_image, ref)
        except NotFound:
            return None
        return str(info["Id"])

    async def inspect_container(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect (None: it is gone)."""
        try:
            info = await self._call(
                "inspect container", docker.APIClient.inspect_container, container_id
            )
        except NotFound:
            return None
        return dict(info)

    # --- images -------------------------------------------------------------------------------

    def registry_auth(self, ref: str) -> RegistryAuth | None:
        """The credentials a pull of `ref` sends (None: anonymous)."""
        return self.credentials.for_image(ref)

    async def download_size(self, ref: str) -> int | None:
        """Bytes a pull of `ref` downloads, from the registry's manifest (with the pull's own
        credentials); None when it can't be told."""
        return await download_size(ref, self.registry_auth(ref))

    async def pull(
        self,
        ref: str,
        on_progress: Callable[[int, int], None],
        cancel: threading.Event,
    ) -> str:
        """Pull `ref`, calling on_progress(percent, bytes) from the worker thread as it goes.

        Setting `cancel` closes the stream, which makes the engine abort the pull. Returns
        the pulled image's id. Images on the cloud's registry are pulled with the device's
        credentials (the engine's X-Registry-Auth), as balena's supervisor pulls them.
        """
        repo, tag = split_image_ref(ref)
        auth = self.registry_auth(ref)
        cloud = self.credentials.cloud_registry
        headers: dict[str, str] = {}
        if auth is not None:
            headers["X-Registry-Auth"] = docker.auth.encode_header(
                {"username": auth.username, "password": auth.password, "serveraddress": auth.server}
            )

        def run() -> str:
            progress = PullProgress()
            api = self.api
            try:
                # the client is a requests.Session: its public post, so the stream can be closed
                response = api.post(
                    f"{api.base_url}/v{api.api_version}/images/create",
                    params={"fromImage": repo, "tag": tag},
                    headers=headers,
                    stream=True,
                    timeout=None,
                )
                try:
                    _raise_for_status(response)
                    for line in response.iter_lines():
                        if cancel.is_set():
                            raise PullError(f"{ref}: pull cancelled")
                        changed = progress.feed(json.loads(line)) if line.strip() else None
                        if changed is not None:
                            on_progress(changed, progress.bytes_downloaded)
                finally:
                    response.close()
                info = api.inspect_image(ref)
            except (docker.errors.APIError, PullStreamError) as exc:  # refused, failed, or gone
                raise pull_error(ref, exc, auth, cloud) from exc
            except (
                requests.exceptions.RequestException,
                ConnectionError,
                urllib3.exceptions.HTTPError,  # the progress stream cut (dockerd restarting)
                http.client.HTTPException,
            ) as exc:
                raise PullError(
                    f"{ref}: connection to the engine lost during pull ({exc})"
                ) from exc
            except ValueError as exc:  # a progress line that isn't JSON, or odd numbers in it
                raise PullError(f"{ref}: unreadable pull progress from the engine ({exc})") from exc
            on_progress(100, progress.bytes_downloaded)
            return str(info["Id"])

        context = contextvars.copy_context()  # as asyncio.to_thread does
        return await asyncio.get_running_loop().run_in_executor(self._pull_pool(), context.run, run)

    async def remove_image(self, image_id: str) -> None:
        await self._call(f"remove image {image_id[:19]}", docker.APIClient.remove_image, image_id)

    # --- volumes and networks -----------------------------------------------------------------

    async def create_volume(
        self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]
    ) -> None:
        all_labels = {**labels, LABEL_SUPERVISED: "true"}
        await self._call(
            f"create volume {name}",
            docker.APIClient.create_volume,
            name,
            driver,
            driver_opts=opts or None,
            labels=all_labels,
        )

    async def create_network(
        self,
        name: str,
        driver: str,
        internal: bool,
        labels: dict[str, str],
        ipam: tuple[IpamPool, ...] = (),
    ) -> None:
        all_labels = {**labels, LABEL_SUPERVISED: "true"}
        pools = [
            docker.types.IPAMPool(subnet=p.subnet, gateway=p.gateway, iprange=p.ip_range)
            for p in ipam
        ]
        await self._call(
            f"create network {name}",
            docker.APIClient.create_network,
            name,
            driver=driver,
            internal=internal,
            labels=all_labels,
            check_duplicate=True,
            ipam=docker.types.IPAMConfig(pool_configs=pools) if pools else None,
        )

    async def remove_network(self, name: str, reserved: bool = False) -> None:
        if name in self.reserved_networks and not reserved:
            raise Conflict(f"remove network {name}: it is the supervisor network, not an app's")
        await self._run(f"remove network {name}", lambda: self.api.remove_network(name))

    async def inspect_network(self, name: str) -> dict[str, Any] | None:
        try:
            info = await self._run(
                f"inspect network {name}", lambda: self.api.inspect_network(name)
            )
        except NotFound:
            return None
        return dict(info)

    async def create_bridge_network(
        self, name: str, subnet: str, gateway: str, bridge_name: str
    ) -> None:
        """A bridge network of the agent's own (no app labels): the supervisor network."""
        pool = docker.types.IPAMPool(subnet=subnet, gateway=gateway)
        await self._run(  # (the client is made in the worker: this may be the first call)
            f"create network {name}",
            lambda: self.api.create_network(
                name,
                driver="bridge",
                options={"com.docker.network.bridge.name": bridge_name},
                ipam=docker.types.IPAMConfig(driver="default", pool_configs=[pool]),
                check_duplicate=True,
            ),
        )

    # --- containers ---------------------------------------------------------------------------

    async def create_container(self, spec: ContainerSpec, network_mode: str | None) -> str:
        def run() -> str:
            api = self.api
            host_config = api.create_host_config(
                **{**spec.host_config, "network_mode": network_mode}
            )
            networking = None

            def endpoint(net: str) -> dict[str, Any]:
                return dict(spec.endpoints.get(net) or {"aliases": list(spec.aliases)})

            if spec.primary_network and network_mode == spec.primary_network:
                networking = api.create_networking_config(
                    {
                        spec.primary_network: api.create_endpoint_config(
                            **endpoint(spec.primary_network)
                        )
                    }
                )
            created = api.create_container(
                **spec.create, host_config=host_config, networking_config=networking
            )
            container_id = str(created["Id"])
            for net in spec.extra_networks:
                api.connect_container_to_network(container_id, net, **endpoint(net))
            return container_id

        with _translated(f"create container {spec.name}"):
            return await asyncio.to_thread(run)

    async def start(self, container_id: str) -> None:
        await self._call("start container", docker.APIClient.start, container_id)

    async def stop(self, container_id: str, timeout: int | None = None) -> None:
        await self._call("stop container", docker.APIClient.stop, container_id, timeout=timeout)

    async def kill_and_remove(self, container_id: str, timeout: int | None = None) -> None:
        """Stop gracefully (the container's stop signal, then SIGKILL after the timeout) and
        remove; a container that is already gone is fine."""
        try:
            await self._call("stop container", docker.APIClient.stop, container_id, timeout=timeout)
        except NotFound:
            return
        try:
            await self._call(
                "remove container",
                docker.APIClient.remove_container,
                container_id,
                v=False,
                force=True,
            )
        except NotFound:
            return

    async def rename(self, container_id: str, name: str) -> None:
        await self._call("rename container", docker.APIClient.rename, container_id, name)

    # --- local API actions --------------------------------------------------------------------

    async def restart(self, container_id: str, timeout: int | None = None) -> None:
        kwargs = {} if timeout is None else {"timeout": timeout}
        await self._call("restart container", docker.APIClient.restart, container_id, **kwargs)

    async def remove_volume(self, name: str) -> None:
        await self._call(f"remove volume {name}", docker.APIClient.remove_volume, name)

    async def log_lines(
        self, container_id: str, since: float | None, follow: bool
    ) -> AsyncIterator[tuple[float, str]]:
        """A container's log as (unix time, line), from `since` (None: from the start); with
        `follow`, until the container stops or the consumer closes the iterator."""

        def open_stream() -> Any:
            return self.api.logs(
                container_id,
                stream=True,
                follow=follow,
                timestamps=True,
                since=int(since) if since else None,
            )

        def lines(stream: Any) -> Iterator[tuple[float, str]]:
            pending = b""
            for chunk in stream:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                yield from (_log_line(line) for line in complete)
            if pending:
                yield _log_line(pending)

        async for item in _follow(
            f"logs-{container_id[:12]}", "container logs", open_stream, lines
        ):
            yield item

    def last_exit_code(self, container_id: str) -> int | None:
        """The exit code of the container's latest `die` seen on the event stream (None: none
        seen since the agent started, or the stream is not followed)."""
        return self._exit_codes.get(container_id)

    def die_count(self, container_id: str) -> int:
        """How many `die` events the event stream has shown for the container (0 while the
        stream is not followed): a restart by the engine always follows one."""
        return self._dies.get(container_id, 0)

    def _note_exit(self, action: str, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        cid = str(actor.get("ID") or event.get("id") or "")
        if action == "destroy":
            self._exit_codes.pop(cid, None)
            self._dies.pop(cid, None)
        elif action == "die" and cid:
            self._dies[cid] = self._dies.get(cid, 0) + 1
            code = str((actor.get("Attributes") or {}).get("exitCode", ""))
            if code.isascii() and code.lstrip("-").isdigit():
                self._exit_codes[cid] = int(code)

    async def container_events(self) -> AsyncIterator[str]:
        """The actions (`die`, `destroy`, `oom`) of the engine's events for supervised
        containers, as they happen; first `CONNECTED` once the stream is open. Ends when the
        stream breaks (the engine restarted): the caller reconnects."""

        def open_stream() -> Any:
            return self.api.events(decode=True, filters=EVENT_FILTERS)

        def actions(stream: Any) -> Iterator[str]:
            yield CONNECTED
            for event in stream:
                action = str(event.get("Action") or event.get("status") or "")
                self._note_exit(action, event)
                yield action

        async for action in _follow("engine-events", "engine events", open_stream, actions):
            yield action


# how the engine words a registry's refusal of a pull's credentials (or of a pull without any):
# distribution's errors, dockerd's own, Docker Hub's and balena's token servers'
_AUTH_REFUSED = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "incorrect username or password",
    "requested access to the resource is denied",
    "may require 'docker login'",
)


def _raise_for_status(response: requests.Response) -> None:
    """An engine answer that refuses the request raises the SDK's error for it (its public
    translation, which reads the engine's message from the body: before the stream closes)."""
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        docker.errors.create_api_error_from_http_exception(exc)


def pull_error(
    ref: str,
    exc: docker.errors.APIError | PullStreamError,
    auth: RegistryAuth | None,
    cloud: str | None,
) -> PullError:
    """THE translation of a failed pull into the agent's error, worded for the log and the
    app's status: RegistryAuthRefused when the registry turned the credentials (or their
    absence) down, else a PullError with the engine's words."""
    status: int | None = None
    if isinstance(exc, docker.errors.NotFound):
        return PullError(f"{ref}: not found in the registry ({exc.explanation})")
    if isinstance(exc, docker.errors.APIError):
        detail, status = str(exc.explanation or exc), exc.status_code
    else:
        detail = str(exc)
    low = detail.lower()
    if status not in (401, 403) and not any(marker in low for marker in _AUTH_REFUSED):
        return PullError(f"{ref}: {detail}")
    if auth is not None:
        return RegistryAuthRefused(f"{ref}: the registry refused {auth.describe()} ({detail})")
    host = image_registry(ref)
    where = f"registry {cloud}" if cloud else "registry: none, registryEndpoint is not set"
    return RegistryAuthRefused(
        f"{ref}: the registry {host} refused an anonymous pull: the image is private or does "
        f"not exist (no credentials are configured for {host}; the device's own go only to the "
        f"cloud's {where}) ({detail})"
    )


EVENT_FILTERS = {
    "type": ["container"],
    "label": ["io.balena.supervised"],
    "event": ["die", "destroy", "oom"],
}


FOLLOW_BUFFER = 256  # items of a followed engine stream read ahead of its consumer


async def _follow(
    name: str, what: str, open_stream: Callable[[], Any], items: Callable[[Any], Iterator[T]]
) -> AsyncGenerator[T, None]:
    """Items of a blocking engine stream (`open_stream()`, read through `items`) read in a
    thread of its own, not the shared executor: a followed stream blocks for as long as it
    runs, and a few of them would starve every other engine call. An error opening it raises
    (EngineError); the stream breaking off later just ends the iteration."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[T | BaseException | None] = asyncio.Queue()
    holder: list[Any] = []
    closed = threading.Event()
    # items handed to the loop but not taken yet: a consumer that lags holds the reader back
    # (the engine keeps the rest) instead of the queue growing with the whole log
    room = threading.Semaphore(FOLLOW_BUFFER)

    def put(item: T | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def hand_over(item: T) -> bool:
        while not room.acquire(timeout=0.5):
            if closed.is_set():
                return False
        put(item)
        return True

    def read() -> None:
        try:
            with _translated(what):
                stream = open_stream()
            holder.append(stream)
            if closed.is_set():  # the consumer left while we were connecting
                stream.close()
                return
            for item in items(stream):
                if not hand_over(item):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer (or dropped on close)
            put(exc)

    threading.Thread(target=read, name=name, daemon=True).start()
    try:
        while True:
            got = await queue.get()
            room.release()
            if got is None:
                return
            if isinstance(got, EngineError):
                raise got  # opening the stream failed (no such container, engine down...)
            if isinstance(got, BaseException):
                return  # the stream broke off: the container is gone or we closed it
            yield got
    finally:
        closed.set()
        for stream in holder:
            with contextlib.suppress(Exception):
                stream.close()


def _log_line(raw: bytes) -> tuple[float, str]:
    """`2024-05-01T10:00:00.123456789Z message` (docker's timestamps=True) → (unix time, text)."""
    text = raw.decode(errors="replace").rstrip("\r")
    stamp, _, message = text.partition(" ")
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        when = datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
    except ValueError:
        return time.time(), text
    return when, message


def _label_int(labels: dict[str, str], key: str) -> int:
    try:
        return int(labels.get(key, "0"))
    except ValueError:
        return 0


def _container_state(raw: dict[str, Any]) -> ContainerState | None:
    labels: dict[str, str] = raw.get("Labels") or {}
    names = raw.get("Names") or ["/"]
    name = names[0].lstrip("/")
    service = labels.get(LABEL_SERVICE_NAME)
    app_uuid = labels.get(LABEL_APP_UUID)
    if not service or not app_uuid:
        return None
    # release metadata lives in the name, so an unchanged container can be renamed into a
    # new release: {service}_{imageId}_{releaseId}_{releaseUuid}
    parts = name.rsplit("_", 3)
    if len(parts) == 4 and parts[0] == service and parts[2].isdigit():
        release_id, release_uuid = int(parts[2]), parts[3]
    else:
        release_id = _label_int(labels, LABEL_RELEASE_ID)
        release_uuid = labels.get(LABEL_RELEASE_UUID, "")
    state = str(raw.get("State") or "created")
    status_text = str(raw.get("Status") or "")
    exit_match = _EXIT_RE.search(status_text)
    health_match = _HEALTH_RE.search(status_text)
    health = None
    if health_match:
        health = "starting" if "starting" in health_match.group(1) else health_match.group(1)
    try:
        status = ContainerStatus(state)
    except ValueError:
        status = ContainerStatus.DEAD
    return ContainerState(
        id=str(raw["Id"]),
        name=name,
        app_id=_label_int(labels, LABEL_APP_ID),
        app_uuid=app_uuid,
        service_name=service,
        service_id=_label_int(labels, LABEL_SERVICE_ID),
        image_id=_label_int(labels, LABEL_IMAGE_ID),
        release_uuid=release_uuid,
        release_id=release_id,
        image=labels.get(LABEL_IMAGE_REF) or str(raw.get("Image", "")),
        image_docker_id=str(raw.get("ImageID", "")),
        config_hash=labels.get(LABEL_CONFIG_HASH),
        status=status,
        health=health,
        exit_code=int(exit_match.group(1)) if exit_match else None,
        created_at=str(raw.get("Created", "")),
    )


def _volume_state(raw: dict[str, Any]) -> VolumeState:
    labels = raw.get("Labels") or {}
    return VolumeState(
        name=str(raw["Name"]),
        app_id=volume_app_id(str(raw["Name"]), labels),
        app_uuid=labels.get(LABEL_APP_UUID),
        labels=dict(labels),
    )


def _network_state(raw: dict[str, Any]) -> NetworkState:
    labels = raw.get("Labels") or {}
    return NetworkState(
        name=str(raw["Name"]),
        id=str(raw["Id"]),
        app_id=_label_int(labels, LABEL_APP_ID),
        app_uuid=network_app_uuid(str(raw["Name"]), labels),
        labels=dict(labels),
    )
