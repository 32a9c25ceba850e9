"""The fault suite's update: a two-service release r1 → r2, where both services get a new
image and `aux` is handed over (the new container starts beside the old one, which is killed
once the new one writes handover-complete). Plus the checks every fault test ends with."""

from __future__ import annotations

import time
from typing import Any

from testbed.targets import service
from tests.faults.conftest import FaultImages
from tests.helpers import wait_until
from tests.integration.conftest import Device
from tests.integration.demo_app import (
    APP,
    demo_target,
    started_at,
    volume_file,
    wait_status,
)

# aux says handover-complete 1.5 s after it starts (the old one is then killed); it exits on TERM
HANDOVER_CMD = [
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM INT; sleep 1.5; touch /tmp/balena/handover-complete; "
    "while true; do sleep 1; done",
]


def two_services(
    rel: str, rid: int, main_image: str, aux_image: str, *, marker: str | None = None
) -> dict[str, Any]:
    """main (download-then-kill, named volume `data`) and aux (hand-over)."""
    services = {
        "main": service(
            main_image,
            service_id=1,
            image_id=rid * 10 + 1,
            volumes=["data:/data"],
            environment={"MARKER": marker or rel},
        ),
        "aux": service(
            aux_image,
            service_id=2,
            image_id=rid * 10 + 2,
            labels={
                "io.balena.update.strategy": "hand-over",
                "io.balena.update.handover-timeout": "30000",
            },
            command=HANDOVER_CMD,
        ),
    }
    return demo_target(rel, rid, services)


def r1(fi: FaultImages) -> dict[str, Any]:
    return two_services("r1", 1, fi.main_v1, fi.aux_v1)


def r2(fi: FaultImages) -> dict[str, Any]:
    return two_services("r2", 2, fi.main_v2, fi.aux_v2)


def deploy_r1(dev: Device, fi: FaultImages, timeout: float = 90) -> dict[str, str]:
    """Start the agent on r1, wait for `done` and write data into main's named volume."""
    dev.cloud.set_target(dev.uuid, r1(fi))
    dev.agent.start()
    wait_status(dev, "r1", "done", timeout)
    services = dev.by_service()
    assert sorted(services) == ["aux", "main"]
    assert all(len(cs) == 1 and cs[0].status == "running" for cs in services.values())
    code, out = services["main"][0].exec_run(["sh", "-c", "echo keep > /data/file"])
    assert code == 0, out
    return {name: cs[0].id for name, cs in services.items()}


def destroyed_at(dev: Device, since: float, names: set[str]) -> dict[str, float]:
    """When the engine destroyed each of the containers `names` (from its event stream)."""
    out: dict[str, float] = {}
    for raw in dev.docker.events(since=since, until=time.time() + 0.5, decode=True):
        if raw.get("Type") == "container" and raw.get("Action") == "destroy":
            name = raw.get("Actor", {}).get("Attributes", {}).get("name", "")
            if name in names:
                out[name] = raw["timeNano"] / 1e9
    return out


def assert_converged_on(
    dev: Device, rel: str, *, old_names: set[str], since: float, timeout: float = 90
) -> None:
    """The release `rel` is `done`; exactly one running container per service, all of `rel`;
    the named volume kept its data; `done` reported once, and only after every old container
    was gone and every new one running."""
    wait_status(dev, rel, "done", timeout)

    def one_each() -> dict[str, list[Any]]:
        services = dev.by_service()
        return services if all(len(cs) == 1 for cs in services.values()) else {}

    services = wait_until(
        one_each, 10, message=lambda: f"one container per service, have {dev.by_service()}"
    )
    assert sorted(services) == ["aux", "main"]
    for name, (container,) in services.items():
        assert container.status == "running", f"{name} is {container.status}"
        assert container.name.endswith(f"_{rel}"), container.name
    assert volume_file(dev) == "keep", "the named volume lost its data"
    history = dev.history(APP, rel)
    assert history.count("done") == 1, history
    assert history[-1] == "done", history
    done_at = min(
        h["t"]
        for h in dev.state()["update_status_history"]
        if h["release_uuid"] == rel and h["status"] == "done"
    )
    for (container,) in services.values():
        assert done_at >= started_at(container), "done reported before a container had started"
    gone = destroyed_at(dev, since, old_names)
    assert set(gone) == old_names, f"old containers not all removed: {old_names - set(gone)}"
    for name, t in gone.items():
        assert done_at >= t, f"done reported {t - done_at:.2f}s before {name} was removed"
