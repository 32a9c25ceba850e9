"""Shared by the local-API integration tests: a two-service app and waiting for it, a client
that never reads a stream, and the RSS of a process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images

APP = "7c1e0a7c9d2b4c1e8f3a6b7c8d9e0f42"
APP_ID = 77
OTHER = "8d2e0a7c9d2b4c1e8f3a6b7c8d9e0f43"
OTHER_ID = 88
API_LABEL = {"io.balena.features.supervisor-api": "1"}


def two_services(
    images: Images,
    release_uuid: str = "r1",
    release_id: int = 1,
    main: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """`main` (with a named volume) and `aux` (host network, asks for the supervisor API);
    `main` = (image, image id) to run another main image than main_v1."""
    main_image, main_image_id = main or (images.main_v1, 11)
    services = {
        "main": service(main_image, service_id=1, image_id=main_image_id, volumes=["data:/data"]),
        "aux": service(
            images.aux_v1, service_id=2, image_id=12, labels=API_LABEL, network_mode="host"
        ),
    }
    return app(
        app_id=APP_ID,
        name="apiapp",
        release_uuid=release_uuid,
        release_id=release_id,
        services=services,
        volumes={"data": {}},
    )


def other_app(images: Images) -> dict[str, Any]:
    return app(
        app_id=OTHER_ID,
        name="otherapp",
        release_uuid="o1",
        release_id=5,
        services={"solo": service(images.aux_v1, service_id=9, image_id=99)},
    )


def deploy(device: Device, images: Images, *, with_other: bool = False, **kwargs: Any) -> None:
    apps = {APP: two_services(images)}
    if with_other:
        apps[OTHER] = other_app(images)
    device.cloud.set_target(device.uuid, device_target(apps, name="api-device", **kwargs))
    device.agent.start()
    device.agent.wait_api()
    for uuid in apps:
        wait_done(device, uuid)


def wait_done(device: Device, app_uuid: str, timeout: float = 90) -> None:
    def done() -> bool:
        state = device.agent.api("GET", "/v2/agent/status").body
        return any(a["appUuid"] == app_uuid and a["updateStatus"] == "done" for a in state["apps"])

    wait_until(done, timeout, interval=0.3, message=lambda: device.agent.log_tail(30))


def running(device: Device) -> dict[str, str]:
    """service name -> container id of the running containers."""
    listed = device.docker.api.containers(filters={"label": "io.balena.supervised"})  # no inspects
    return {
        c["Labels"]["io.balena.service-name"]: c["Id"] for c in listed if c["State"] == "running"
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def unread(sock: socket.socket) -> bytes:
    """What has arrived on `sock` and is not read yet (left there: a peek)."""
    try:
        return sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


def open_stream(url: str, path: str, key: str, body: bytes | None = None) -> socket.socket:
    """A client that sends its request and never reads (a small receive buffer, too)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    method = "POST" if body is not None else "GET"
    # HTTP/1.0: the body is plain NDJSON until the server closes (no chunk framing)
    head = f"{method} {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + (body or b""))
    return sock
