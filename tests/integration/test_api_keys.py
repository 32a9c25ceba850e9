"""The key a service gets through `io.balena.features.supervisor-api` does what balena's docs
show apps doing with it (reboot, shutdown, update, blink, /v1/device, host-config) and never
reaches another app; config.json `strictApiKeys` keeps it off the device-wide actions."""

from __future__ import annotations

from tests.helpers import wait_until
from tests.integration.api_helpers import APP_ID, OTHER_ID, deploy

PROXY = {"network": {"proxy": {"type": "socks5", "ip": "10.9.8.7", "port": 1080}}}


def _another_apps_routes_refused(api, key: str) -> None:
    assert api("GET", f"/v2/applications/{OTHER_ID}/state", key=key).status == 401
    assert api("POST", f"/v2/applications/{OTHER_ID}/restart", {}, key=key).status == 401
    assert api("POST", "/v1/restart", {"appId": OTHER_ID}, key=key).status == 401
    assert api("POST", "/v1/purge", {"appId": OTHER_ID}, key=key).status == 401
    assert api("GET", f"/v1/apps/{OTHER_ID}", key=key).status == 401
    assert api("POST", f"/v1/apps/{OTHER_ID}/stop", {}, key=key).status == 401


def test_an_app_key_does_what_balena_lets_apps_do(device, images, tmp_path):
    device.agent.config["hostBootDir"] = str(tmp_path / "boot")
    deploy(device, images, with_other=True)
    agent = device.agent
    api = agent.api
    own = agent.api_key(APP_ID)

    # from inside the service that asked for the API, as an app on balena reboots its board
    (aux,) = device.by_service()["aux"]
    script = (
        'wget -q -O - --post-data "" '
        '"$BALENA_SUPERVISOR_ADDRESS/v1/reboot?apikey=$BALENA_SUPERVISOR_API_KEY"'
    )
    code, out = aux.exec_run(["sh", "-c", script])
    assert code == 0 and b'"Data":"OK"' in out, out
    wait_until(lambda: agent.host_actions() == ["reboot"], 10, message="reboot recorded")

    assert api("POST", "/v1/shutdown", {}, key=own).status == 202
    wait_until(lambda: agent.host_actions() == ["reboot", "shutdown"], 10)
    assert api("POST", "/v1/update", {}, key=own).status == 204  # instant updates are on
    assert api("POST", "/v1/update", {"force": True}, key=own).status == 204
    blink = api("POST", "/v1/blink", key=own)
    assert blink.status == 200 and blink.body == "OK"
    assert api("GET", "/v1/device", key=own).status == 200
    assert api("PATCH", "/v1/device/host-config", PROXY, key=own).status == 200
    got = api("GET", "/v1/device/host-config", key=own)
    assert got.status == 200 and got.body["network"]["proxy"]["ip"] == "10.9.8.7"
    # the host recorder (testbed/hoststandin.py): the hostname goes to the recorder, as reboots do
    renamed = api("PATCH", "/v1/device/host-config", {"network": {"hostname": "box-1"}}, key=own)
    assert renamed.status == 200 and renamed.body == "OK"
    assert agent.host_actions()[-1] == "hostname"
    assert api("GET", "/v1/device/host-config").body["network"]["hostname"] == "box-1"
    api("PATCH", "/v1/device/host-config", {"network": {"hostname": ""}})  # the uuid's 7
    assert api("GET", "/v1/device/host-config").body["network"]["hostname"] == device.uuid[:7]

    # still nothing on another app's routes, and not this agent's own device routes
    _another_apps_routes_refused(api, own)
    assert api("GET", "/metrics", key=own).status == 403
    assert api("GET", "/v2/device/status", key=own).status == 403


def test_strict_api_keys_keep_app_keys_off_device_actions(device, images, tmp_path):
    device.agent.config["strictApiKeys"] = True
    device.agent.config["hostBootDir"] = str(tmp_path / "boot")
    deploy(device, images, with_other=True)
    agent = device.agent
    api = agent.api
    own = agent.api_key(APP_ID)

    for method, path, body in (
        ("POST", "/v1/reboot", {}),
        ("POST", "/v1/shutdown", {}),
        ("POST", "/v1/update", {"force": True}),
        ("GET", "/v1/device/host-config", None),
        ("PATCH", "/v1/device/host-config", PROXY),
    ):
        answer = api(method, path, body, key=own)
        assert answer.status == 403, (path, answer.status, answer.body)
        assert "strictApiKeys" in answer.body["message"]
    assert not (tmp_path / "boot" / "system-proxy" / "redsocks.conf").exists()
    assert agent.host_actions() == []
    # what is not device-wide still works; another app's routes are still 401
    assert api("POST", "/v1/blink", key=own).status == 200
    assert api("GET", "/v1/device", key=own).status == 200
    assert api("GET", f"/v2/applications/{APP_ID}/state", key=own).status == 200
    _another_apps_routes_refused(api, own)
    # the device key may do it all
    assert api("POST", "/v1/reboot", {}).status == 202
    wait_until(lambda: agent.host_actions() == ["reboot"], 10)
    assert api("PATCH", "/v1/device/host-config", PROXY).status == 200
