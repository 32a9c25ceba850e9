"""Helpers shared by unit and integration tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

import docker
import docker.errors

from testbed import ThrottledProxy

T = TypeVar("T")

SUPERVISED_LABEL = "io.balena.supervised"


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition",
    *,
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Exceptions listed in `ignore` count as "not yet" (the last one is reported on timeout).
    Raises AssertionError after `timeout` seconds; `message` may be a callable so it can
    describe the state at the time of failure."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {text}{detail}")
        time.sleep(interval)


def remove_labelled(client: docker.DockerClient, label: str = SUPERVISED_LABEL) -> None:
    """Force-remove every container, then network, then volume carrying `label`."""
    filters = {"label": label}
    for container in client.containers.list(all=True, filters=filters):
        _remove_container(client, container.id)
    for network in client.networks.list(filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            network.reload()
            for attached in network.containers:
                network.disconnect(attached, force=True)
            network.remove()
    for volume in client.volumes.list(filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)


def _remove_container(client: docker.DockerClient, container_id: str) -> None:
    """Force-remove a container; when someone else (an agent still stopping) is removing it
    already, the engine answers 409 "already in progress": wait until it is gone instead."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc):
            raise

        def gone() -> bool:
            try:
                client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                return True
            return False

        wait_until(gone, 60, message=f"container {container_id[:12]} removed")


def run_for_output(
    client: docker.DockerClient, image: str, command: list[str], **kwargs: object
) -> str:
    """Run a short container to its end and return what it printed. The engine copies a
    container's output to its log a moment after the process exits: a container that prints
    and exits at once can show an empty log right after `wait` (seen on a loaded machine), so
    the log is read again until it has something, for up to 5 s."""
    container = client.containers.run(image, command, detach=True, **kwargs)
    try:
        container.wait(timeout=60)
        return wait_until(
            lambda: container.logs().decode(), 5, interval=0.1, message="the container's output"
        )
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def wait_bytes_down(proxy: ThrottledProxy, since: int, at_least: int, timeout: float = 60) -> None:
    """Wait until `at_least` more bytes than `since` (an earlier `proxy.bytes_down`) reached
    the engine through the throttling proxy: a download that is well under way, however
    loaded the machine (a fixed sleep after `downloading` may see no byte at all)."""
    wait_until(
        lambda: proxy.bytes_down - since >= at_least,
        timeout,
        interval=0.05,
        message=lambda: f"{at_least} bytes downloaded (got {proxy.bytes_down - since})",
    )
