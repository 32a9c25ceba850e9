"""The v1 routes' error codes, as the reference answers them (src/device-api/v1.ts): the
legacy routes say 400 for an unknown app or a multi-container app, /v1/restart and /v1/purge
say 503 for an app the device doesn't have (the reference's catch-all), and a single-service
app is served."""

from __future__ import annotations

from pathlib import Path

from tests.integration.api_helpers import APP_ID, OTHER_ID, deploy, running


def test_v1_error_codes_match_the_reference(device, images):
    deploy(device, images, with_other=True)
    api = device.agent.api

    # a two-service app on the single-container routes: 400 with the reference's message
    multi = api("GET", f"/v1/apps/{APP_ID}")
    assert multi.status == 400
    assert multi.body["message"] == "Some v1 endpoints are only allowed on single-container apps"
    for action in ("stop", "start"):
        answer = api("POST", f"/v1/apps/{APP_ID}/{action}", {})
        assert answer.status == 400 and "serviceName or imageId" in answer.body["message"]

    # an app the device doesn't have
    assert api("GET", "/v1/apps/4242").status == 400
    assert api("POST", "/v1/apps/4242/stop", {}).status == 400
    assert api("POST", "/v1/apps/4242/start", {}).status == 400
    for path in ("/v1/restart", "/v1/purge"):
        unknown = api("POST", path, {"appId": 4242})
        assert unknown.status == 503, path
        assert unknown.body["message"] == "Application with ID 4242 is not in the current state"

    # malformed or missing app ids
    assert api("GET", "/v1/apps/abc").status == 400
    assert api("POST", "/v1/apps/0/stop", {}).status == 400
    assert api("POST", "/v1/restart", {}).status == 400
    assert api("POST", "/v1/purge", {"appId": "x"}).status == 400

    # the single-service app is served, stopped and started
    single = api("GET", f"/v1/apps/{OTHER_ID}")
    assert single.status == 200 and single.body["appId"] == OTHER_ID
    stopped = api("POST", f"/v1/apps/{OTHER_ID}/stop", {})
    assert stopped.status == 200 and stopped.body == {"containerId": single.body["containerId"]}
    assert "solo" not in running(device)
    # starting takes no update lock (the reference takes none); stopping does
    lock = Path(device.agent.lock_dir) / str(OTHER_ID) / "solo" / "updates.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("app lock\n")
    assert api("POST", f"/v1/apps/{OTHER_ID}/start", {}).status == 200
    assert "solo" in running(device)
    assert api("POST", f"/v1/apps/{OTHER_ID}/stop", {}).status == 423
    assert "solo" in running(device)
    lock.unlink()
