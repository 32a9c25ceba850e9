"""Smoke tests of the testbed itself: real dockerd, real registry, throttling proxy."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from typing import Any

import docker
import docker.errors
import pytest

from testbed import (
    PrivateEngine,
    Registry,
    ThrottledProxy,
    build_image,
    image_ref_via,
    publish,
)
from testbed.images import MIB
from tests.helpers import SUPERVISED_LABEL, run_for_output, wait_until

pytestmark = pytest.mark.integration


def _unique(name: str) -> str:
    """A fresh marker, so no layer of an earlier test short-cuts a download."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


def _pull(client: docker.DockerClient, ref: str) -> list[dict[str, Any]]:
    """Pull `ref`, returning the progress events; raises APIError on failure."""
    repo, _, digest = ref.partition("@")
    events = list(client.api.pull(repo, tag=digest, stream=True, decode=True))
    errors = [e for e in events if "error" in e]
    if errors:
        raise docker.errors.APIError(str(errors[-1]["error"]))
    return events


def test_engine_pings_and_runs_busybox_that_stops_fast(
    engine: PrivateEngine, clean_engine: docker.DockerClient
) -> None:
    client = clean_engine
    assert engine.ping()
    assert client.ping()
    marker = _unique("run")
    image_id = build_image(client, "testbed/smoke", "run", marker=marker, env={"GREETING": "hi x"})
    container = client.containers.run(image_id, detach=True, labels={SUPERVISED_LABEL: "1"})

    def running() -> bool:
        container.reload()
        return container.status == "running"

    wait_until(running, 10, message="the busybox container to run")
    assert container.exec_run(["cat", "/marker"]).output.decode() == marker
    assert container.exec_run(["sh", "-c", "echo $GREETING"]).output == b"hi x\n"
    started = time.monotonic()
    container.stop(timeout=10)
    assert time.monotonic() - started < 3
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0


def test_same_marker_gives_same_layer(docker_client: docker.DockerClient) -> None:
    marker = _unique("same")
    first = build_image(docker_client, "testbed/same", "a", marker=marker, payload_mb=0.5)
    second = build_image(docker_client, "testbed/same", "b", marker=marker, payload_mb=0.5)
    other = build_image(docker_client, "testbed/same", "c", marker=_unique("other"))
    layers = [docker_client.images.get(i).attrs["RootFS"]["Layers"] for i in (first, second, other)]
    assert layers[0] == layers[1] != layers[2]
    for image_id in {first, second, other}:
        docker_client.images.remove(image_id, force=True)


def test_publish_then_pull_through_proxy_by_digest(
    clean_engine: docker.DockerClient, registry: Registry, slow_registry: ThrottledProxy
) -> None:
    client = clean_engine
    marker = _unique("pull")
    published = publish(client, registry, "testbed/pull", "v1", marker, payload_mb=1)
    assert published.ref_by_digest == f"{registry.address}/testbed/pull@{published.digest}"
    assert published.ref_by_tag == f"{registry.address}/testbed/pull:v1"
    assert published.size > MIB
    with pytest.raises(docker.errors.ImageNotFound):  # publish dropped the local copy
        client.images.get(published.image_id)

    via_proxy = image_ref_via(published.ref_by_digest, slow_registry.address)
    assert via_proxy == f"{slow_registry.address}/testbed/pull@{published.digest}"
    before = slow_registry.bytes_down
    _pull(client, via_proxy)
    assert slow_registry.bytes_down - before >= published.size
    output = run_for_output(client, via_proxy, ["cat", "/marker"], labels={SUPERVISED_LABEL: "1"})
    assert output == marker
    client.images.remove(via_proxy, force=True)


def test_throttled_pull_is_slow_and_reports_progress(
    docker_client: docker.DockerClient, registry: Registry, slow_registry: ThrottledProxy
) -> None:
    published = publish(docker_client, registry, "testbed/slow", "v1", _unique("slow"), 8)
    via_proxy = image_ref_via(published.ref_by_digest, slow_registry.address)
    slow_registry.set_rate(4 * MIB)
    started = time.monotonic()
    events = _pull(docker_client, via_proxy)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 30, f"8 MiB at 4 MiB/s took {elapsed:.2f}s"
    progress = [e["progressDetail"]["current"] for e in events if e.get("status") == "Downloading"]
    assert len(progress) >= 5, "expected several download progress events"
    docker_client.images.remove(via_proxy, force=True)


def test_registry_stop_fails_pulls_and_start_restores_them(
    docker_client: docker.DockerClient, registry: Registry
) -> None:
    published = publish(docker_client, registry, "testbed/down", "v1", _unique("down"))
    address = registry.address
    registry.stop()
    assert not registry.is_running()
    with pytest.raises(docker.errors.APIError):
        _pull(docker_client, published.ref_by_digest)
    registry.start()
    assert registry.address == address
    _pull(docker_client, published.ref_by_digest)  # same storage: the image is still there
    docker_client.images.remove(published.ref_by_digest, force=True)


def test_proxy_cut_refuses_and_restore_allows_pulls(
    docker_client: docker.DockerClient, registry: Registry, slow_registry: ThrottledProxy
) -> None:
    published = publish(docker_client, registry, "testbed/cut", "v1", _unique("cut"))
    via_proxy = image_ref_via(published.ref_by_digest, slow_registry.address)
    slow_registry.cut()
    with pytest.raises(docker.errors.APIError):
        _pull(docker_client, via_proxy)
    slow_registry.restore()
    _pull(docker_client, via_proxy)
    docker_client.images.remove(via_proxy, force=True)


def test_proxy_cut_mid_pull_stalls_the_download(
    docker_client: docker.DockerClient, registry: Registry, slow_registry: ThrottledProxy
) -> None:
    published = publish(docker_client, registry, "testbed/stall", "v1", _unique("stall"), 4)
    via_proxy = image_ref_via(published.ref_by_digest, slow_registry.address)
    slow_registry.set_rate(1 * MIB)
    outcome: list[object] = []
    puller = threading.Thread(target=lambda: outcome.append(_try_pull(docker_client, via_proxy)))
    start = slow_registry.bytes_down
    puller.start()
    wait_until(lambda: slow_registry.bytes_down - start > 512 * 1024, 20, message="download")
    slow_registry.cut()
    stalled_at = slow_registry.bytes_down
    time.sleep(1)  # the point: no byte flows for a second while cut
    assert slow_registry.bytes_down == stalled_at, "bytes flowed while cut"
    assert puller.is_alive(), "pull ended while the connection was cut"
    slow_registry.restore()
    slow_registry.set_rate(None)
    puller.join(timeout=60)  # dockerd retries the layer after ~5 s
    assert outcome == [None]
    docker_client.images.remove(via_proxy, force=True)


def _try_pull(client: docker.DockerClient, ref: str) -> Exception | None:
    try:
        _pull(client, ref)
    except Exception as exc:
        return exc
    return None


def test_engine_restart_keeps_the_client_usable(
    engine: PrivateEngine, docker_client: docker.DockerClient
) -> None:
    old_pid = engine.pid
    engine.restart()
    assert engine.pid not in (None, old_pid)
    assert docker_client.ping()
    assert docker_client.version()["ApiVersion"]


def test_proxy_rate_is_shared_across_connections() -> None:
    """Two parallel downloads through one 1 MiB/s proxy take ~2 s for 2 × 1 MiB (no docker)."""
    blob = b"x" * MIB

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(blob)
        await writer.drain()
        writer.close()

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = server.sockets[0].getsockname()[1]
    try:
        with ThrottledProxy(f"127.0.0.1:{port}", rate_bps=MIB) as proxy:
            host, _, proxy_port = proxy.address.rpartition(":")
            received: list[int] = []

            def fetch() -> None:
                with socket.create_connection((host, int(proxy_port)), timeout=30) as sock:
                    received.append(sum(iter(lambda: len(sock.recv(65536)), 0)))

            started = time.monotonic()
            workers = [threading.Thread(target=fetch) for _ in range(2)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=30)
            elapsed = time.monotonic() - started
        assert received == [MIB, MIB]
        assert 1.6 <= elapsed < 6, f"2 MiB at 1 MiB/s took {elapsed:.2f}s"
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
