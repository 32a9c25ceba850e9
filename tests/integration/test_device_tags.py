"""Device tags set through `PATCH /v2/device/tags`: accepted (202) and persisted whether or
not the cloud can be reached, sent to the devcloud as the reference sends them (`PATCH
/device/v3/tags`, `{uuid: {tagKey: value}}`, only what changed), after a restart too."""

from __future__ import annotations

from datetime import datetime

from testbed.processes import free_port
from tests.helpers import wait_until


def test_tags_reach_the_cloud_promptly_and_only_what_changed(device):
    device.cloud.tags(device.uuid, {"location": "lab"})  # set from the dashboard
    device.agent.start()
    device.agent.wait_api()
    api = device.agent.api

    before = api("GET", "/v2/device/tags").body
    assert before["status"] == "success"
    assert [(t["name"], t["value"]) for t in before["tags"]] == [("location", "lab")]
    assert isinstance(before["tags"][0]["id"], int)

    patched = api("PATCH", "/v2/device/tags", {"location": "roof", "floor": "2"})
    assert patched.status == 202 and patched.body == {"status": "success"}
    wait_until(
        lambda: device.cloud.tags(device.uuid) == {"location": "roof", "floor": "2"},
        10,
        message=lambda: f"tags in the cloud: {device.cloud.tags(device.uuid)}",
    )
    assert device.cloud.tag_requests(device.uuid) == [{"location": "roof", "floor": "2"}]
    after = {t["name"]: t for t in api("GET", "/v2/device/tags").body["tags"]}
    assert {k: t["value"] for k, t in after.items()} == {"location": "roof", "floor": "2"}
    assert all(isinstance(t["id"], int) for t in after.values())

    # the same values again: nothing to send; one changed value: only that one is sent
    assert api("PATCH", "/v2/device/tags", {"location": "roof", "floor": "2"}).status == 202
    assert api("PATCH", "/v2/device/tags", {"location": "roof", "floor": "3"}).status == 202
    # at most one PATCH every 10 s, as the reference: this one goes when they are up
    wait_until(lambda: device.cloud.tags(device.uuid).get("floor") == "3", 20)
    assert device.cloud.tag_requests(device.uuid) == [
        {"location": "roof", "floor": "2"},
        {"floor": "3"},
    ]

    # the reference's 400s for a body that is not {tagKey: string}
    bad_value = api("PATCH", "/v2/device/tags", {"floor": 3})
    assert bad_value.status == 400 and "Invalid tags body" in bad_value.body["message"]
    bad_key = api("PATCH", "/v2/device/tags", {"my floor": "3"})
    assert bad_key.status == 400
    assert bad_key.body["message"] == "Tag keys cannot contain whitespace"
    assert api("PATCH", "/v2/device/tags", ["floor"]).status == 400
    assert device.cloud.tags(device.uuid) == {"location": "roof", "floor": "3"}


def test_tags_set_while_the_cloud_is_down_are_sent_after_a_restart(device):
    agent = device.agent
    real_cloud = agent.config["apiEndpoint"]
    agent.config["apiEndpoint"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    agent.start()
    agent.wait_api()

    patched = agent.api("PATCH", "/v2/device/tags", {"location": "roof"})
    assert patched.status == 202 and patched.body == {"status": "success"}
    # answered from what is known: the pending tag, which the cloud has no id for yet
    known = agent.api("GET", "/v2/device/tags")
    assert known.status == 200
    assert known.body["tags"] == [{"id": None, "name": "location", "value": "roof"}]
    wait_until(lambda: agent.events_named("device_tags_report_failed"), 10)

    agent.kill()  # a power cut: the 202 came after the tags were on disk
    agent.config["apiEndpoint"] = real_cloud
    agent.start()
    wait_until(
        lambda: device.cloud.tags(device.uuid) == {"location": "roof"},
        15,
        message=lambda: agent.log_tail(20),
    )
    assert device.cloud.tag_requests(device.uuid) == [{"location": "roof"}]
    agent.wait_api()
    tags = agent.api("GET", "/v2/device/tags").body["tags"]
    assert [(t["name"], t["value"]) for t in tags] == [("location", "roof")]
    assert isinstance(tags[0]["id"], int)


def test_tags_go_out_as_soon_as_a_poll_says_the_cloud_is_back(device):
    agent = device.agent
    agent.start()
    agent.wait_api()
    device.cloud.set_fault(device.uuid, "500")  # polls and tags answered 500 until cleared
    assert agent.api("PATCH", "/v2/device/tags", {"location": "roof"}).status == 202
    failed = wait_until(lambda: agent.events_named("device_tags_report_failed"), 10)[0]
    assert failed["retry_in_s"] >= 7.5  # the reference's minimum, with jitter from its half
    device.cloud.clear_fault(device.uuid)
    wait_until(lambda: device.cloud.tags(device.uuid) == {"location": "roof"}, 30)
    # sent after the next good poll, not when the backoff ran out
    reported = wait_until(lambda: agent.events_named("device_tags_reported"), 10)[0]
    assert _t(reported) < _t(failed) + failed["retry_in_s"], (failed, reported)
    assert device.cloud.tag_requests(device.uuid) == [{"location": "roof"}]


def _t(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
