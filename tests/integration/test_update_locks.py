"""Update locks on the real engine: an app holds one from inside its container (the real bind
mount), and the agent killed while holding its own finds them stale on restart. The legacy
lock name and the override setting are in the fake-engine tier (tests/fakeengine/test_locks.py)."""

from __future__ import annotations

import time

from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, deploy_first, exec_ok, ids, release, wait_status

SLOW_STOP = ["/bin/sh", "-c", "trap '' TERM; while true; do sleep 1; done"]


def reported_lock(dev: Device, release_uuid: str) -> dict | None:
    app = dev.state()["current"].get("apps", {}).get(APP, {})
    return app.get("releases", {}).get(release_uuid, {}).get("update_lock")


def held_update_then_release(dev: Device, images: Images, lock_path: str) -> None:
    before = deploy_first(dev, images)
    exec_ok(dev, "aux", f"touch {lock_path}")  # a lock on any service locks the whole app
    dev.cloud.set_target(dev.uuid, release(images, "r2", 2, images.main_v3))
    wait_status(dev, "r2", "downloaded")
    time.sleep(3)
    assert dev.update_status(APP) == ("r2", "downloaded")
    assert ids(dev) == before, "a locked app's containers were touched"
    assert all(cs[0].status == "running" for cs in dev.by_service().values())
    held = dev.agent.wait_for_event("lock_held", 5)
    assert held["service"] == "aux"
    lock = wait_until(lambda: reported_lock(dev, "r2"), 10, message="lock holder in the report")
    assert lock["service"] == "aux"
    t0 = time.monotonic()
    exec_ok(dev, "aux", f"rm {lock_path}")
    wait_status(dev, "r2", "done", timeout=15)
    assert time.monotonic() - t0 < 5, "the update did not follow the lock's release promptly"
    after = ids(dev)
    assert after["main"] != before["main"] and after["aux"] == before["aux"]
    assert dev.history(APP, "r2") == ["downloading", "downloaded", "applying changes", "done"]


def test_lock_held_from_inside_a_container_holds_the_update(device, images):
    held_update_then_release(device, images, "/tmp/balena/updates.lock")


def test_agent_killed_while_holding_its_own_locks_clears_them_on_restart(device, images):
    target = release(images, "r1", 1, images.main_v1)
    target["apps"][APP]["releases"]["r1"]["services"]["main"]["composition"].update(
        command=SLOW_STOP, stop_grace_period="15s"
    )
    device.cloud.set_target(device.uuid, target)
    device.agent.start()
    wait_status(device, "r1", "done")
    device.cloud.set_target(device.uuid, release(images, "r2", 2, images.main_v3))
    device.agent.wait_for_event("step_started", 30, step=f"kill {ids_name(device, 'main')}")
    own = wait_until(
        lambda: list(device.agent.lock_dir.rglob("updates.lock")),
        5,
        message="the agent's own lock files",
    )
    assert all(p.stat().st_uid == 65534 for p in own)
    device.agent.kill()  # while the slow container is still stopping
    device.agent.start()
    removed = device.agent.wait_for_event("stale_lock_removed", 10)
    assert removed["path"].endswith(".lock")
    wait_status(device, "r2", "done", timeout=60)
    assert not list(device.agent.lock_dir.rglob("*.lock"))
    assert [c.status for c in device.by_service()["main"]] == ["running"]


def ids_name(dev: Device, service: str) -> str:
    (container,) = dev.by_service()[service]
    return container.name
