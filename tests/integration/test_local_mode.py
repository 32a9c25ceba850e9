"""Local mode: the balena CLI's `balena push <device-ip>` flow, v3 targets, persistence."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request

from testbed import build_image
from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.api_helpers import running

LOOP = "trap 'exit 0' TERM; while true; do sleep 1; done"


def cli_v2_apps() -> dict:
    """`local.apps` as the balena CLI's generateTargetState builds it."""

    def svc(idx: int, name: str, **compose) -> dict:
        return {
            "environment": {"WHO": name},
            "labels": {},
            **compose,
            "imageId": idx,
            "serviceName": name,
            "serviceId": idx,
            "image": f"local_image_{name}:latest",
            "running": True,
        }

    return {
        "1": {
            "name": "localapp",
            "commit": "localrelease",
            "releaseId": "1",
            "services": {
                "1": svc(
                    1,
                    "main",
                    restart="always",
                    volumes=["data:/data"],
                    command=["sh", "-c", f"echo hello-from-main; {LOOP}"],
                ),
                "2": svc(2, "aux", privileged=False, tty=False, network_mode="bridge"),
            },
            "volumes": {"data": {}},
            "networks": {},
        }
    }


def stream_logs(url: str, seconds: float, out: list[dict]) -> threading.Thread:
    def read() -> None:
        deadline = time.monotonic() + seconds
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=seconds) as response,
        ):
            out.append({"content_type": response.headers["Content-Type"]})
            while time.monotonic() < deadline:
                line = response.readline()
                if not line:
                    break
                out.append(json.loads(line))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_balena_push_flow_v2_then_v3_and_restart(device, images):
    for name in ("main", "aux"):
        build_image(device.docker, f"local_image_{name}", "latest", marker=f"local-{name}")
    device.cloud.set_target(
        device.uuid, device_target({}, name="dev", config={"BALENA_SUPERVISOR_LOCAL_MODE": "1"})
    )
    agent = device.agent.start()
    agent.wait_api()
    api = agent.api
    # what the CLI asks first, without a key; every answer it reads is application/json
    for path in ("/v2/version", "/v2/local/device-info", "/v2/local/target-state"):
        wait_until(lambda: api("GET", path, key=None).status == 200, 10)  # noqa: B023 (called here)
        assert api("GET", path, key=None).content_type.startswith("application/json")
    # the CLI's gates (balena-cli src/utils/device/deploy.ts): multicontainer local mode needs
    # a supervisor >= 7.21.4, livepush >= 9.7.0
    claimed = api("GET", "/v2/version", key=None).body["version"]
    assert tuple(int(part) for part in claimed.split(".")) >= (9, 7, 0)
    state = api("GET", "/v2/local/target-state", key=None).body["state"]
    assert state["local"]["config"] == {"BALENA_SUPERVISOR_LOCAL_MODE": "1"}

    logs: list[dict] = []
    reader = stream_logs(f"{agent.api_url}/v2/local/logs", 20, logs)
    state["local"]["apps"] = cli_v2_apps()
    posted = api("POST", "/v2/local/target-state", state, key=None)
    assert posted.status == 200 and posted.body == {"status": "success", "message": "OK"}
    wait_until(
        lambda: (
            api("GET", "/v2/state/status", key=None).body["appState"] == "applied"
            and set(running(device)) == {"main", "aux"}
        ),
        60,
        message=agent.log_tail,
    )
    main_id = api("GET", "/v2/containerId?serviceName=main", key=None).body["containerId"]
    assert main_id == running(device)["main"]
    assert not agent.events_named("pull_started"), "a local image was pulled"
    wait_until(lambda: any(line.get("message") == "hello-from-main" for line in logs), 15)
    reader.join(25)
    assert logs[0]["content_type"].startswith("application/x-ndjson")
    assert logs[1] == {"message": "Streaming logs", "isSystem": True}
    hello = next(line for line in logs if line.get("message") == "hello-from-main")
    assert hello["serviceName"] == "main" and hello["isSystem"] is False
    assert isinstance(hello["timestamp"], int)
    assert any(line.get("isSystem") and "update status" in line["message"] for line in logs)

    # GET returns it (as v3 apps); local apps are not reported to the cloud
    local = api("GET", "/v2/local/target-state", key=None).body["state"]["local"]
    assert set(local["apps"]) == {"1"}
    assert set(local["apps"]["1"]["releases"]["localrelease"]["services"]) == {"main", "aux"}
    assert not device.state()["current"].get("apps")

    # a restart keeps it: same containers, still served
    agent.stop()
    agent.start()
    agent.wait_api()
    time.sleep(3)  # the point: the restarted agent's first passes replace nothing
    assert running(device)["main"] == main_id
    assert api("GET", "/v2/local/target-state", key=None).body["state"]["local"] == local

    # a rebuilt image under the same tag replaces the container
    build_image(device.docker, "local_image_main", "latest", marker="local-main-2")
    state = api("GET", "/v2/local/target-state", key=None).body["state"]
    state["local"]["apps"] = cli_v2_apps()
    assert api("POST", "/v2/local/target-state", state, key=None).status == 200
    wait_until(lambda: running(device).get("main") not in (None, main_id), 60)

    # v3, as the cloud would send it, with registry images
    v3 = {
        device.uuid: device_target(
            {
                "a3": app(
                    app_id=3,
                    name="v3app",
                    release_uuid="v3r",
                    release_id=30,
                    services={
                        "one": service(images.main_v1, service_id=31, image_id=301),
                        "two": service(images.aux_v1, service_id=32, image_id=302),
                    },
                )
            },
            name="dev",
            config={"BALENA_SUPERVISOR_LOCAL_MODE": "1"},
        )
    }
    assert api("POST", "/v2/local/target-state", v3, key=None).status == 200
    wait_until(lambda: set(running(device)) == {"one", "two"}, 90, message=agent.log_tail)
    assert set(api("GET", "/v2/local/target-state", key=None).body["state"]["local"]["apps"]) == {
        "a3"
    }

    # a bad local target is refused whole, with the reason; the running apps stay
    bad = {
        "local": {
            "name": "dev",
            "config": {},
            "apps": {"1": {"name": "x", "commit": "c", "releaseId": "one"}},
        }
    }
    refused = api("POST", "/v2/local/target-state", bad, key=None)
    assert refused.status == 400 and "releaseId" in refused.body["message"]
    assert set(running(device)) == {"one", "two"}

    # leaving local mode: the cloud's target applies again
    device.cloud.set_target(device.uuid, device_target({}, name="dev"))
    agent.api("POST", "/v1/update", {"force": True})
    wait_until(lambda: not running(device), 60, message=agent.log_tail)
    assert api("POST", "/v2/local/target-state", v3).status == 400


def test_a_posted_target_is_applying_until_the_engine_was_looked_at_again(device):
    """The balena CLI's livepush, on a changed Dockerfile, removes the service's container
    itself, posts the target again and takes the first `appState: applied` answer's container
    as the new one. As on the reference (its apply is in progress from the POST on), a POST
    makes the state `applying` until a pass has seen the engine as it now is."""
    build_image(device.docker, "local_image_main", "latest", marker="local-main")
    device.cloud.set_target(
        device.uuid, device_target({}, name="dev", config={"BALENA_SUPERVISOR_LOCAL_MODE": "1"})
    )
    agent = device.agent.start()
    agent.wait_api()
    api = agent.api
    wait_until(lambda: api("GET", "/v2/local/target-state", key=None).status == 200, 10)
    state = api("GET", "/v2/local/target-state", key=None).body["state"]
    state["local"]["apps"] = cli_v2_apps()
    del state["local"]["apps"]["1"]["services"]["2"]
    assert api("POST", "/v2/local/target-state", state, key=None).status == 200

    def applied() -> dict | None:
        body = api("GET", "/v2/state/status", key=None).body
        return body if body["appState"] == "applied" else None

    first = wait_until(applied, 60, message=agent.log_tail)
    old = {c["serviceName"]: c["containerId"] for c in first["containers"]}["main"]
    for _ in range(3):
        device.docker.api.remove_container(old, force=True)
        state = api("GET", "/v2/local/target-state", key=None).body["state"]
        # the same target again (v3, as GET answers it)
        assert api("POST", "/v2/local/target-state", state, key=None).status == 200
        settled = wait_until(applied, 60, message=agent.log_tail)
        new = {c["serviceName"]: c["containerId"] for c in settled["containers"]}["main"]
        assert new != old and running(device)["main"] == new
        old = new
