"""The lock dirs are the containers' ground: whatever an app puts at the names the agent reads
or writes (a FIFO, a symlink to a host file, a directory) neither hangs nor crashes the agent,
nor makes it read, write or remove a host file. At a lock name it holds the update like a lock
file; at a hand-over name it is cleared (or, if it can't be, logged) and the update goes on."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agent.locks import MARKER, OWNER_UID
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images
from tests.integration.demo_app import APP, APP_ID, deploy_first, exec_ok, ids, release, wait_status


class Pinger:
    """GET /ping every 100 ms from a thread, recording failures (2 s timeout each)."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.dev.agent.api("GET", "/ping", key=None, timeout=2)
                if answer.status == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"status {answer.status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            self._stop.wait(0.1)


def host_secret(dev: Device) -> Path:
    """A host file outside the lock dir that looks like the agent's own lock if followed."""
    secret = dev.agent.root / "host-secret"
    secret.write_bytes(MARKER)
    os.chown(secret, OWNER_UID, OWNER_UID)
    return secret


def assert_responsive(dev: Device) -> None:
    """The v2 API answers, and a restart-service call is refused as locked without hanging."""
    state = dev.agent.api("GET", "/v2/applications/state", timeout=5)
    assert state.status == 200, state
    assert set(state.body) == {"demo"}, state.body
    t0 = time.monotonic()
    refused = dev.agent.api(
        "POST", f"/v2/applications/{APP_ID}/restart-service", {"serviceName": "main"}, timeout=5
    )
    assert refused.status == 423, refused
    assert time.monotonic() - t0 < 5


MAKE = {
    "fifo": "mkfifo {path}",
    "symlink": "ln -s {secret} {path}",
    "directory": "mkdir -p {path}/inside && echo x > {path}/inside/file",
}


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("fifo", "/tmp/balena/updates.lock"),
        ("symlink", "/tmp/balena/updates.lock"),
        ("directory", "/tmp/resin/resin-updates.lock"),
    ],
)
def test_an_odd_entry_at_a_lock_name_holds_the_update_and_the_agent_stays_responsive(
    device: Device, images: Images, kind: str, path: str
) -> None:
    secret = host_secret(device)
    before = deploy_first(device, images)
    exec_ok(device, "aux", MAKE[kind].format(path=path, secret=secret))
    with Pinger(device) as pinger:
        device.cloud.set_target(device.uuid, release(images, "r2", 2, images.main_v3))
        wait_status(device, "r2", "downloaded", timeout=20)
        odd = device.agent.wait_for_event("lock_entry_unexpected", 5)
        assert odd["kind"] == kind and odd["service"] == "aux"
        assert odd["path"].endswith(path.rsplit("/", 1)[1]), odd
        assert odd["path"].startswith(str(device.agent.lock_dir)), odd
        assert_responsive(device)
        time.sleep(1)  # the point: the update stays held at the lock meanwhile
        assert device.update_status(APP) == ("r2", "downloaded"), "the update went past the lock"
        assert ids(device) == before, "a locked app's containers were touched"
        assert all(cs[0].status == "running" for cs in device.by_service().values())
        assert secret.read_bytes() == MARKER, "the host file behind the symlink was touched"
        exec_ok(device, "aux", f"rm -rf {path}")
        wait_status(device, "r2", "done", timeout=15)
    assert pinger.failures == [], pinger.failures
    assert pinger.answered > 10
    assert ids(device)["main"] != before["main"]
    assert secret.read_bytes() == MARKER
    assert device.agent.running


def test_odd_entries_at_the_handover_names_neither_crash_nor_hold_the_update(
    device: Device, images: Images
) -> None:
    secret = host_secret(device)
    before = deploy_first(device, images)
    # main is replaced by the update: its hand-over names are cleared before its new container
    # starts; aux stays: its entries are only ever looked at
    exec_ok(
        device,
        "main",
        "mkdir -p /tmp/balena/handover-complete/x && mkfifo /tmp/resin/resin-kill-me",
    )
    exec_ok(device, "aux", f"ln -s {secret} /tmp/balena/handover-complete")
    exec_ok(device, "aux", "mkdir /tmp/resin/resin-kill-me")
    with Pinger(device) as pinger:
        device.cloud.set_target(device.uuid, release(images, "r2", 2, images.main_v3))
        wait_status(device, "r2", "done", timeout=25)
        kept = device.agent.wait_for_event("handover_entry_not_removed", 5)
        assert kept["kind"] == "directory" and kept["service"] == "main"
        assert kept["path"].endswith("/handover-complete")
    assert pinger.failures == [], pinger.failures
    after = ids(device)
    assert after["main"] != before["main"] and after["aux"] == before["aux"]
    assert all(cs[0].status == "running" for cs in device.by_service().values())
    main_dir = device.agent.lock_dir / str(APP_ID) / "main"
    assert (main_dir / "handover-complete" / "x").is_dir(), "an app's directory was rm -r'd"
    assert not (main_dir / "resin-kill-me").exists(), "the FIFO signal was not cleared"
    aux_dir = device.agent.lock_dir / str(APP_ID) / "aux"
    assert (aux_dir / "handover-complete").is_symlink()
    assert secret.read_bytes() == MARKER
    wait_until(lambda: device.agent.api("GET", "/ping", key=None, timeout=2).status == 200, 5)
    assert device.agent.running


def test_a_forced_update_removes_odd_lock_entries_it_can_and_backs_off_on_the_rest(
    device: Device, images: Images
) -> None:
    secret = host_secret(device)
    before = deploy_first(device, images)
    exec_ok(device, "main", f"ln -s {secret} /tmp/balena/updates.lock")  # removable: the link
    exec_ok(device, "aux", "mkdir -p /tmp/resin/resin-updates.lock/inside")  # left, like rmdir
    forced = release(
        images, "r2", 2, images.main_v3, config={"BALENA_SUPERVISOR_OVERRIDE_LOCK": "1"}
    )
    with Pinger(device) as pinger:
        device.cloud.set_target(device.uuid, forced)
        overridden = device.agent.wait_for_event("lock_overridden", 20, service="main")
        assert overridden["kind"] == "symlink"
        kept = device.agent.wait_for_event("lock_not_removed", 5, service="aux")
        assert kept["kind"] == "directory" and kept["path"].endswith("/resin-updates.lock")
        passes = len(device.agent.events_named("apply_pass"))
        time.sleep(3)  # the point: passes counted over a 3 s window
        again = len(device.agent.events_named("apply_pass")) - passes
        assert again <= 3, f"{again} apply passes in 3 s: retries must back off"
        assert_responsive(device)
        assert ids(device) == before, "the app's containers were touched while it was locked"
        assert all(cs[0].status == "running" for cs in device.by_service().values())
        exec_ok(device, "aux", "rm -rf /tmp/resin/resin-updates.lock")
        wait_status(device, "r2", "done", timeout=20)
    assert pinger.failures == [], pinger.failures
    assert secret.read_bytes() == MARKER, "the symlink's target was touched"
    assert ids(device)["main"] != before["main"]
