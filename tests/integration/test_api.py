"""The local supervisor API against a running agent: every route's shape, keys and scopes."""

from __future__ import annotations

import time

from agent import SUPERVISOR_COMPAT_VERSION, __version__
from tests.helpers import wait_until
from tests.integration.api_helpers import APP, APP_ID, OTHER_ID, deploy, running


def test_every_endpoint_answers_with_the_reference_shape(device, images):
    deploy(device, images)
    agent = device.agent
    api = agent.api

    assert api("GET", "/ping", key=None).body == "OK"
    assert api("GET", "/v1/healthy", key=None).status == 200
    version = api("GET", "/v2/version")
    assert version.content_type.startswith("application/json")
    # the balena supervisor version the agent matches (the balena CLI gates local mode and
    # livepush on it); the agent's own version is in /v2/agent/status
    assert version.body == {"status": "success", "version": SUPERVISOR_COMPAT_VERSION}
    own = api("GET", "/v2/agent/status").body["device"]
    assert own["agentVersion"] == __version__
    assert own["supervisorVersion"] == SUPERVISOR_COMPAT_VERSION

    dev = api("GET", "/v1/device").body
    assert {
        "api_port",
        "ip_address",
        "os_version",
        "mac_address",
        "supervisor_version",
        "update_pending",
        "update_failed",
        "update_downloaded",
        "commit",
        "status",
        "download_progress",
    } <= dev.keys()
    assert dev["api_port"] == agent.config["listenPort"] and dev["commit"] == "r1"
    assert dev["supervisor_version"] == SUPERVISOR_COMPAT_VERSION
    reported = [r["body"].get("supervisor_version") for r in device.state()["reports"]]
    assert SUPERVISOR_COMPAT_VERSION in reported, reported
    env = device.docker.containers.get(running(device)["main"]).attrs["Config"]["Env"]
    assert f"BALENA_SUPERVISOR_VERSION={SUPERVISOR_COMPAT_VERSION}" in env
    assert dev["update_pending"] is False and dev["status"] == "Idle"

    apps = api("GET", "/v2/applications/state").body
    assert set(apps) == {"apiapp"}
    entry = apps["apiapp"]
    assert entry["appId"] == APP_ID and entry["appUuid"] == APP and entry["commit"] == "r1"
    assert entry["updateStatus"] == "done"
    assert set(entry["services"]) == {"main", "aux"}
    assert entry["services"]["main"] == {
        "status": "Running",
        "image": images.main_v1,
        "releaseId": 1,
        "downloadProgress": None,
    }

    one = api("GET", f"/v2/applications/{APP_ID}/state").body
    assert one["commit"] == "r1"
    assert set(one["local"][str(APP_ID)]["services"]) == {"11", "12"}
    assert one["local"][str(APP_ID)]["services"]["11"]["status"] == "Running"

    status = api("GET", "/v2/state/status").body
    assert status["status"] == "success" and status["appState"] == "applied"
    assert status["release"] == "r1" and status["overallDownloadProgress"] is None
    assert {c["serviceName"] for c in status["containers"]} == {"main", "aux"}
    container = next(c for c in status["containers"] if c["serviceName"] == "main")
    assert container["status"] == "Running" and container["appId"] == APP_ID
    assert container["imageId"] == 11 and container["serviceId"] == 1
    assert container["createdAt"].endswith("Z")
    assert {i["serviceName"] for i in status["images"]} == {"main", "aux"}
    assert all(i["status"] == "Downloaded" and i["dockerImageId"] for i in status["images"])

    ids = api("GET", "/v2/containerId").body
    assert ids["status"] == "success" and ids["services"] == running(device)
    one_id = api("GET", "/v2/containerId?serviceName=main").body
    assert one_id == {"status": "success", "containerId": running(device)["main"]}
    # the reference's 503 for a service it doesn't have
    assert api("GET", "/v2/containerId?serviceName=nope").status == 503

    assert api("GET", "/v2/device/name").body == {"status": "success", "deviceName": "api-device"}
    vpn = api("GET", "/v2/device/vpn").body
    # no `vpn` in config.json: cloudlink is disabled, and the probe says so
    assert vpn == {"status": "success", "vpn": {"enabled": False, "connected": False}}
    status = api("GET", "/v2/device/status").body
    assert status["device"]["status"] == "Operational"
    assert status["device"]["legacy_status"] == "Online"
    assert status["device"]["cloudlink"] == {
        "ok": False,
        "enabled": False,
        "kind": None,
        "last_handshake": None,
        "detail": "cloudlink disabled",
    }
    assert status["device"]["heartbeat"]["ok"] is True
    info = api("GET", "/v2/local/device-info").body
    assert info["status"] == "success" and info["info"]["deviceType"] == "generic-amd64"
    assert info["info"]["arch"]

    device.cloud.tags(device.uuid, {"location": "lab"})
    tags = api("GET", "/v2/device/tags").body
    assert tags["status"] == "success"
    assert [(t["name"], t["value"]) for t in tags["tags"]] == [("location", "lab")]
    patched = api("PATCH", "/v2/device/tags", {"location": "roof", "floor": "2"})
    assert patched.status == 202 and patched.body == {"status": "success"}
    # sent by the agent's tag sender (tests/integration/test_device_tags.py)
    wait_until(lambda: device.cloud.tags(device.uuid) == {"location": "roof", "floor": "2"}, 10)
    assert api("PATCH", "/v2/device/tags", {"bad key": "x"}).status == 400

    target = api("GET", "/v2/local/target-state").body
    assert target["status"] == "success"
    assert target["state"]["local"]["name"] == "api-device"
    assert set(target["state"]["local"]["apps"]) == {APP}

    assert api("GET", "/v2/cleanup-volumes").body == {"status": "success"}
    assert any(v.name == f"{APP_ID}_data" for v in device.docker.volumes.list())  # in use: kept

    # no LED on this board: 200 and a log line, as the reference answers
    blink = api("POST", "/v1/blink")
    assert blink.status == 200 and blink.body == "OK"
    agent.wait_for_event("blink_requested", 10, led=False)
    journal = api("POST", "/v2/journal-logs", {"count": 5})
    assert journal.status in (200, 501)

    # legacy single-container routes on a two-service app: the reference's 400
    single = api("GET", f"/v1/apps/{APP_ID}")
    assert single.status == 400 and "single-container" in single.body["message"]
    assert api("GET", "/v1/apps/4242").status == 400  # the reference's legacy answer

    metrics = api("GET", "/metrics")
    assert metrics.status == 200 and metrics.content_type.startswith("text/plain")
    text = metrics.body
    labels = f'app="apiapp",app_uuid="{APP}",release="r1",status="done"'
    assert f"device_agent_update_status{{{labels}}} 1.0" in text
    assert "device_agent_download_bytes_total" in text
    assert "device_agent_apply_duration_seconds_count 1.0" in text
    assert "device_agent_heartbeat_age_seconds" in text

    spec = api("GET", "/v2/openapi.json").body
    assert spec["openapi"].startswith("3.") and "/v2/local/target-state" in spec["paths"]

    # the global key is reported to the cloud as api_secret
    wait_until(
        lambda: device.state()["current"].get("api_secret") == agent.api_key(),
        15,
        message="api_secret reported",
    )


def test_keys_and_scopes(device, images):
    deploy(device, images, with_other=True)
    agent = device.agent
    api = agent.api
    own, other = agent.api_key(APP_ID), agent.api_key(OTHER_ID)
    assert own != other != agent.api_key()

    # only /ping and /v1/healthy are open; a wrong key is refused
    assert api("GET", "/v2/version", key=None).status == 401
    assert api("GET", "/v2/version", key="0" * 32).status == 401
    assert api("GET", f"/v2/version?apikey={agent.api_key()}", key=None).status == 200
    assert api("GET", "/v1/healthy", key=None).status == 200

    # an app-scoped key: its own app, nothing else
    assert api("GET", f"/v2/applications/{APP_ID}/state", key=own).status == 200
    assert set(api("GET", "/v2/applications/state", key=own).body) == {"apiapp"}
    assert api("GET", f"/v2/applications/{OTHER_ID}/state", key=own).status == 401
    assert api("POST", f"/v2/applications/{OTHER_ID}/restart", {}, key=own).status == 401
    assert api("POST", "/v1/restart", {"appId": OTHER_ID}, key=own).status == 401
    # (device-wide actions with an app key: tests/integration/test_api_keys.py)
    assert api("GET", "/metrics", key=own).status == 403
    assert api("GET", "/v2/device/status", key=own).status == 403
    assert set(api("GET", "/v2/containerId", key=own).body["services"]) == {"main", "aux"}
    assert agent.host_actions() == []

    # the key really is in the container that asked for the API, and works from inside it
    (aux,) = device.by_service()["aux"]
    env = dict(e.split("=", 1) for e in aux.attrs["Config"]["Env"])
    assert env["BALENA_SUPERVISOR_API_KEY"] == own
    assert env["BALENA_SUPERVISOR_PORT"] == str(agent.config["listenPort"])
    assert env["BALENA_SUPERVISOR_ADDRESS"] == f"http://127.0.0.1:{agent.config['listenPort']}"
    (main,) = device.by_service()["main"]
    assert "BALENA_SUPERVISOR_API_KEY" not in str(main.attrs["Config"]["Env"])
    code, out = aux.exec_run(
        [
            "wget",
            "-q",
            "-O",
            "-",
            f"{env['BALENA_SUPERVISOR_ADDRESS']}/v2/applications/state?apikey={own}",
        ]
    )
    assert code == 0 and b'"apiapp"' in out, out

    # rotation: the old key stops working at once, the new one is reported as api_secret
    old = agent.api_key()
    rotated = api("POST", "/v1/regenerate-api-key")
    assert rotated.status == 200 and rotated.content_type.startswith("text/plain")
    new = rotated.body
    assert len(new) == 32 and new != old
    assert api("GET", "/v2/version", key=old).status == 401
    assert api("GET", "/v2/version", key=new).status == 200
    wait_until(lambda: device.state()["current"].get("api_secret") == new, 15)
    # an app key rotates itself only
    own2 = api("POST", "/v1/regenerate-api-key", key=own).body
    assert api("GET", f"/v2/applications/{APP_ID}/state", key=own).status == 401
    assert api("GET", f"/v2/applications/{APP_ID}/state", key=own2).status == 200
    assert api("GET", "/v2/version", key=new).status == 200

    # keys survive a restart
    agent.stop()
    agent.start()
    agent.wait_api()
    assert api("GET", "/v2/version", key=new).status == 200
    assert api("GET", f"/v2/applications/{APP_ID}/state", key=own2).status == 200


def test_bad_requests_get_400_with_a_reason(device, images):
    deploy(device, images)
    api = device.agent.api
    cases = [
        ("POST", "/v1/restart", {}, "Missing app id"),
        ("POST", "/v1/restart", {"appId": "x"}, "Invalid app id"),
        ("POST", "/v1/update", {"force": "maybe"}, "'force' must be true or false"),
        ("POST", f"/v2/applications/{APP_ID}/restart-service", {}, "serviceName or imageId"),
        ("POST", f"/v2/applications/{APP_ID}/stop-service", {"serviceName": 5}, "serviceName"),
        ("POST", "/v1/reboot", b"{not json", "not valid JSON"),
        ("POST", "/v1/reboot", b"[1]", "must be a JSON object"),
        ("GET", "/v2/applications/abc/state", None, "Invalid app id"),
        ("POST", "/v2/journal-logs", {"format": "evil"}, "'format' must be one of"),
        ("POST", "/v2/local/target-state", {"local": {}}, "local mode"),
    ]
    for method, path, body, reason in cases:
        answer = api(method, path, body)
        assert answer.status == 400, (path, answer)
        assert answer.body["status"] == "failed" and reason in answer.body["message"], answer
    unknown = api("POST", "/v2/applications/4242/restart-service", {"serviceName": "main"})
    assert unknown.status == 404
    missing = api("POST", f"/v2/applications/{APP_ID}/restart-service", {"serviceName": "zzz"})
    assert missing.status == 404 and "Service not found" in missing.body["message"]
    big = api("POST", "/v1/update", b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}')
    assert big.status == 413 and big.body["status"] == "failed"
    assert api("GET", "/v2/nothing-here").status == 404
    assert api("DELETE", "/v2/version").status == 405
    assert not [e for e in device.agent.events_named("api_request") if e["status"] >= 500]


def test_update_triggers_a_poll_within_a_second(device, images):
    device.agent.write_config(appUpdatePollInterval=600_000)
    deploy(device, images)
    polls_before = len(device.state()["polls"])
    latencies = []
    for _ in range(5):
        t0 = time.time()
        answer = device.agent.api("POST", "/v1/update", {})
        assert answer.status == 204
        wait_until(lambda: len(device.state()["polls"]) > polls_before, 5, interval=0.02)  # noqa: B023
        polls = device.state(since=t0)["polls"]
        latencies.append(polls[0]["t"] - t0)
        polls_before = len(device.state()["polls"])
        time.sleep(0.2)  # a pause between the requests (not a wait for anything)
    print(
        f"/v1/update -> poll latency: max {max(latencies) * 1000:.0f} ms, "
        f"all {[round(x * 1000) for x in latencies]}"
    )
    assert max(latencies) < 1.0
    # instant updates off: ignored (202), unless forced (204)
    device.cloud.set_target(
        device.uuid,
        device.cloud.device(device.uuid)["target"]
        | {"config": {"BALENA_SUPERVISOR_INSTANT_UPDATE_TRIGGER": "0"}},
    )
    device.agent.api("POST", "/v1/update", {"force": True})
    device.agent.wait_for_event("config_changed", 10)
    assert device.agent.api("POST", "/v1/update", {}).status == 202
    assert device.agent.api("POST", "/v1/update", {"force": True}).status == 204
