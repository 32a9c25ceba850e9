"""Update strategies and start order on the real engine, checked from its own event stream: one
test per strategy family (download first; kill first, here with the image deleted too;
hand-over through the real bind mount) and a start order that waits for a real healthcheck.
Every strategy, the unknown one, and a hand-over to an unhealthy container are in the
fake-engine tier (tests/fakeengine/test_strategies.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import docker

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, APP_ID, release, wait_status


@dataclass(frozen=True)
class Event:
    t: float
    kind: str  # container | image
    action: str
    name: str  # container name or image reference


def events(client: docker.DockerClient, since: float) -> list[Event]:
    out = []
    for raw in client.events(since=since, until=time.time() + 0.5, decode=True):
        kind = raw.get("Type")
        if kind not in ("container", "image"):
            continue
        attrs = raw.get("Actor", {}).get("Attributes", {})
        name = attrs.get("name") or raw.get("Actor", {}).get("ID", "")
        out.append(Event(raw["timeNano"] / 1e9, kind, raw["Action"], name))
    return out


def first(evts: list[Event], action: str, predicate: Any = lambda e: True) -> Event:
    for e in evts:
        if e.action == action and predicate(e):
            return e
    raise AssertionError(f"no {action} event in {[(e.action, e.name) for e in evts]}")


def with_strategy(
    images: Images, rel: str, rid: int, main: str, strategy: str, **main_comp: Any
) -> dict[str, Any]:
    target = release(images, rel, rid, main)
    main_svc = target["apps"][APP]["releases"][rel]["services"]["main"]
    main_svc["labels"]["io.balena.update.strategy"] = strategy
    main_svc["composition"].update(main_comp)
    return target


def update_and_collect(dev: Device, images: Images, strategy: str) -> tuple[list[Event], Any]:
    dev.cloud.set_target(dev.uuid, with_strategy(images, "r1", 1, images.main_v1, strategy))
    dev.agent.start()
    wait_status(dev, "r1", "done")
    (old,) = dev.by_service()["main"]
    t0 = time.time()
    dev.cloud.set_target(dev.uuid, with_strategy(images, "r2", 2, images.main_v3, strategy))
    wait_status(dev, "r2", "done")
    return events(dev.docker, t0), old


def is_v3(e: Event) -> bool:
    return e.kind == "image" and "app/main" in e.name


def test_download_then_kill_pulls_before_stopping(device, images):
    evts, old_container = update_and_collect(device, images, "download-then-kill")
    old = old_container.name
    pulled = first(evts, "pull", is_v3)
    killed = first(evts, "die", lambda e: e.name == old)
    started = first(evts, "start", lambda e: e.name.startswith("main_") and e.name != old)
    assert pulled.t < killed.t < started.t


def test_delete_then_download_also_removes_the_old_image_first(device, images):
    evts, old = update_and_collect(device, images, "delete-then-download")
    destroyed = first(evts, "destroy", lambda e: e.name == old.name)
    deleted = first(evts, "delete", lambda e: e.kind == "image" and e.name == old.attrs["Image"])
    pulled = first(evts, "pull", is_v3)
    assert destroyed.t < deleted.t < pulled.t


def test_hand_over_kills_the_old_container_within_1s_of_handover_complete(device, images):
    labels = {"io.balena.update.handover-timeout": "60000"}
    r1 = with_strategy(images, "r1", 1, images.main_v1, "hand-over")
    device.cloud.set_target(device.uuid, r1)
    device.agent.start()
    wait_status(device, "r1", "done")
    (old,) = device.by_service()["main"]
    t0 = time.time()
    r2 = with_strategy(images, "r2", 2, images.main_v3, "hand-over")
    r2["apps"][APP]["releases"]["r2"]["services"]["main"]["labels"].update(labels)
    device.cloud.set_target(device.uuid, r2)
    new = wait_until(
        lambda: [
            c for c in device.by_service()["main"] if c.id != old.id and c.status == "running"
        ],
        60,
        message="the new container running beside the old one",
    )[0]
    time.sleep(3)
    old.reload()
    assert old.status == "running", "old container killed before handover-complete"
    assert device.update_status(APP)[1] == "applying changes"
    services = device.state()["current"]["apps"][APP]["releases"]["r2"]["services"]
    assert services["main"]["status"] == "Handing over"
    code, out = new.exec_run(["sh", "-c", "touch /tmp/balena/handover-complete"])
    assert code == 0, out
    # when the service wrote the file (the same directory, seen from the host): the docker exec
    # that wrote it is the test's own overhead, not the agent's reaction time
    written = (device.agent.lock_dir / str(APP_ID) / "main" / "handover-complete").stat()
    wait_status(device, "r2", "done", timeout=15)
    evts = events(device.docker, t0)
    new_started = first(evts, "start", lambda e: e.name == new.name)
    # the engine's `kill` event: the stop signal sent at the agent's request (its `die` comes
    # when the old service has shut down, which on a loaded machine takes a while longer)
    old_killed = first(evts, "kill", lambda e: e.name == old.name)
    assert new_started.t < old_killed.t
    after = old_killed.t - written.st_mtime
    assert after < 1.0, f"killed {after:.2f}s after handover-complete was written"


def test_depends_on_service_healthy_starts_in_order(device, images):
    db = service(
        images.aux_v1,
        service_id=2,
        image_id=2,
        command=[
            "/bin/sh",
            "-c",
            "trap 'exit 0' TERM; sleep 2; touch /tmp/ready; while true; do sleep 1; done",
        ],
        healthcheck={"test": ["CMD", "test", "-f", "/tmp/ready"], "interval": "1s", "retries": 30},
    )
    main = service(
        images.main_v1,
        service_id=1,
        image_id=1,
        depends_on={"db": {"condition": "service_healthy"}},
    )
    target = device_target(
        {
            APP: app(
                app_id=APP_ID,
                name="demo",
                release_uuid="r1",
                release_id=1,
                services={"main": main, "db": db},
            )
        }
    )
    t0 = time.time()
    device.cloud.set_target(device.uuid, target)
    device.agent.start()
    wait_status(device, "r1", "done", timeout=60)
    evts = events(device.docker, t0)
    healthy = first(evts, "health_status: healthy", lambda e: e.name.startswith("db_"))
    main_started = first(evts, "start", lambda e: e.name.startswith("main_"))
    assert healthy.t < main_started.t
