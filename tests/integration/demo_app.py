"""Shared by the integration and fault tests: the one-app `demo` target (main + aux, a named
volume), waiting for its update status, and what a converged device looks like."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from typing import Any

import docker.errors

from testbed.processes import REPO_ROOT
from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images

APP = "5f1e0a7c9d2b4c1e8f3a6b7c8d9e0f11"


APP_ID = 101


def release(
    images: Images,
    release_uuid: str,
    release_id: int,
    main_image: str,
    with_aux: bool = True,
    config: dict[str, str] | None = None,
    aux_image: str | None = None,
) -> dict[str, Any]:
    services = {
        "main": service(
            main_image, service_id=1, image_id=release_id * 10 + 1, volumes=["data:/data"]
        ),
    }
    if with_aux:
        services["aux"] = service(aux_image or images.aux_v1, service_id=2, image_id=2)
    return demo_target(release_uuid, release_id, services, config)


def demo_target(
    release_uuid: str,
    release_id: int,
    services: dict[str, Any],
    config: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A target with the one app `demo` (named volume `data`) running `services`."""
    return device_target(
        {
            APP: app(
                app_id=APP_ID,
                name="demo",
                release_uuid=release_uuid,
                release_id=release_id,
                services=services,
                volumes={"data": {}},
            )
        },
        config=config,
    )


def wait_status(dev: Device, release_uuid: str, status: str, timeout: float = 90) -> None:
    wait_until(
        lambda: dev.update_status(APP) == (release_uuid, status),
        timeout,
        interval=0.2,
        message=lambda: (
            f"{release_uuid} {status}; cloud sees {dev.update_status(APP)}; "
            f"agent log:\n{dev.agent.log_tail(30)}"
        ),
    )


def deploy_first(dev: Device, images: Images) -> dict[str, str]:
    """Deploy r1 (main v1 + aux) and write a file into main's named volume."""
    dev.cloud.set_target(dev.uuid, release(images, "r1", 1, images.main_v1))
    dev.agent.start()
    wait_status(dev, "r1", "done")
    services = dev.by_service()
    assert sorted(services) == ["aux", "main"]
    assert all(len(cs) == 1 and cs[0].status == "running" for cs in services.values())
    code, _ = services["main"][0].exec_run(["sh", "-c", "echo keep > /data/file"])
    assert code == 0
    return {name: cs[0].id for name, cs in services.items()}


def volume_file(dev: Device) -> str:
    (main,) = dev.by_service()["main"]
    code, out = main.exec_run(["cat", "/data/file"])
    assert code == 0, out
    return out.decode().strip()


def progress_seen(dev: Device, release_uuid: str, since: float) -> list[int]:
    values = []
    for report in dev.state(since=since)["reports"]:
        rel = report["body"].get("apps", {}).get(APP, {}).get("releases", {}).get(release_uuid)
        for svc in (rel or {}).get("services", {}).values():
            if svc.get("download_progress") is not None:
                values.append(svc["download_progress"])
    return values


def first_report_time(dev: Device, release_uuid: str, status: str) -> float:
    return min(
        h["t"]
        for h in dev.state()["update_status_history"]
        if h["release_uuid"] == release_uuid and h["status"] == status
    )


def started_at(container: Any) -> float:
    container.reload()
    raw = container.attrs["State"]["StartedAt"]  # RFC 3339 with nanoseconds
    head, _, frac = raw.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


def assert_converged(dev: Device, release_uuid: str) -> None:
    services = dev.by_service()
    for name, cs in services.items():
        assert len(cs) == 1, f"{name} has {len(cs)} containers"
        assert cs[0].status == "running"
        assert cs[0].name.endswith(f"_{release_uuid}"), cs[0].name
    done_at = first_report_time(dev, release_uuid, "done")
    for cs in services.values():
        assert done_at >= started_at(cs[0]), "done reported before a container had started"


def has_image(dev: Device, ref: str) -> bool:
    try:
        dev.docker.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def exec_ok(dev: Device, service: str, script: str) -> None:
    (container,) = dev.by_service()[service]
    code, out = container.exec_run(["sh", "-c", script])
    assert code == 0, out


def ids(dev: Device) -> dict[str, str]:
    return {name: cs[0].id for name, cs in dev.by_service().items()}


LOOP = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 1; done"]


EXIT_1 = ["/bin/sh", "-c", "sleep 0.2; exit 1"]


# short probation and deadlines, so each verdict comes within seconds
CONFIG = {
    "BALENA_DEVICE_AGENT_PROBATION_S": "3",
    "BALENA_DEVICE_AGENT_HEALTH_DEADLINE_S": "3",
}


def target(rel: str, rid: int, image: str, command: list[str], **comp: Any) -> dict[str, Any]:
    main = service(image, service_id=1, image_id=rid * 10 + 1, command=command, **comp)
    return demo_target(rel, rid, {"main": main}, config=CONFIG)


def main_container(dev: Device) -> Any:
    mains = dev.by_service().get("main") or []
    assert len(mains) == 1, [c.labels.get("io.balena.release-uuid") for c in mains]
    return mains[0]


def wait_running(dev: Device, rel: str, timeout: float = 60) -> str:
    """Wait until `main` is one running container of release `rel`; its id."""

    def ok() -> bool:
        mains = dev.by_service().get("main") or []
        return (
            len(mains) == 1
            and mains[0].labels.get("io.balena.release-uuid") == rel
            and mains[0].status == "running"
        )

    wait_until(ok, timeout, interval=0.2, message=lambda: dev.agent.log_tail(30))
    return str(main_container(dev).id)


HOOKS = "DEVICE_AGENT_TEST_HOOKS"


CRASH_AT = "DEVICE_AGENT_TEST_CRASH_AT"


def crash_at(dev: Device, point: str) -> None:
    """Start the agent so that it SIGKILLs itself at `point`; wait for that to happen."""
    dev.agent.env = {HOOKS: "1", CRASH_AT: point}
    dev.agent.start()
    code = dev.agent.wait_exit(60)
    assert code == -9, f"agent did not die at {point} (exit {code}):\n{dev.agent.log_tail(30)}"
    name, _, n = point.rpartition(":")
    crashes = dev.agent.events_named("test_hook_crash")
    assert crashes and crashes[-1] == {"event": "test_hook_crash", "point": name, "n": int(n)}
    dev.agent.env = {}


def cli(device, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--config", str(device.agent.config_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
