"""The agent as an arm64 board runs it: the aarch64 image under QEMU, driving the engine through
its mounted socket, against the devcloud — deploy, a held update lock, update, done."""

from __future__ import annotations

import time

from testbed.container_agent import ContainerAgent
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, release, wait_status

SLOW = 180.0  # everything the agent does is 5-20x slower under QEMU on two cores


def ids(dev: Device) -> dict[str, str]:
    return {name: cs[0].id for name, cs in dev.by_service().items()}


def test_arm64_agent_deploys_holds_for_a_lock_and_updates(arm_device: Device, images: Images):
    agent = arm_device.agent
    assert isinstance(agent, ContainerAgent)
    started = time.monotonic()
    arm_device.cloud.set_target(arm_device.uuid, release(images, "r1", 1, images.main_v1))
    agent.start()
    wait_until(lambda: agent.events_named("agent_starting"), SLOW, message=agent.log_tail)
    print(f"arm64 agent: first log line after {time.monotonic() - started:.1f}s")
    assert agent.exec("python3", "-c", "import platform; print(platform.machine())") == "aarch64\n"
    wait_status(arm_device, "r1", "done", timeout=SLOW)
    print(f"arm64 agent: r1 done after {time.monotonic() - started:.1f}s")
    before = ids(arm_device)
    assert sorted(before) == ["aux", "main"]

    # the local API answers, from inside the emulated container, on the host network
    agent.wait_api(timeout=SLOW)
    assert agent.api("GET", "/v1/healthy", key=None).status == 200
    info = agent.api("GET", "/v2/local/device-info")
    assert info.status == 200, info.body
    assert info.body["info"]["arch"] == "aarch64"
    state = agent.api("GET", "/v2/state/status")
    assert state.status == 200 and state.body["appState"] == "applied"

    # an app holds its update lock: the new release downloads and waits
    (aux,) = arm_device.by_service()["aux"]
    assert aux.exec_run(["touch", "/tmp/balena/updates.lock"]).exit_code == 0
    arm_device.cloud.set_target(arm_device.uuid, release(images, "r2", 2, images.main_v3))
    wait_status(arm_device, "r2", "downloaded", timeout=SLOW)
    held = agent.wait_for_event("lock_held", 30)
    assert held["service"] == "aux"
    time.sleep(3)
    assert arm_device.update_status(APP) == ("r2", "downloaded")
    assert ids(arm_device) == before, "a locked app's containers were touched"

    # released: the update goes on to done
    t0 = time.monotonic()
    assert aux.exec_run(["rm", "/tmp/balena/updates.lock"]).exit_code == 0
    wait_status(arm_device, "r2", "done", timeout=SLOW)
    print(f"arm64 agent: r2 done {time.monotonic() - t0:.1f}s after the lock went")
    after = ids(arm_device)
    assert after["main"] != before["main"] and after["aux"] == before["aux"]
    assert arm_device.history(APP, "r2") == [
        "downloading",
        "downloaded",
        "applying changes",
        "done",
    ]
