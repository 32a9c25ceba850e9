import pytest

from agent.errors import TargetStateError
from agent.local.legacy import LOCAL_IMAGE_ID_LABEL, pin_local_images, service_images, to_v3
from agent.model import parse_target

UUID = "dev1"


def cli_body():
    """What `balena push <ip>` posts (lib/utils/device/deploy.ts generateTargetState)."""
    return {
        "local": {
            "name": "my-device",
            "config": {"BALENA_SUPERVISOR_LOCAL_MODE": "1"},
            "apps": {
                "1": {
                    "name": "localapp",
                    "commit": "localrelease",
                    "releaseId": "1",
                    "services": {
                        "1": {
                            "environment": {"A": "1"},
                            "labels": {},
                            "restart": "always",
                            "volumes": ["data:/data"],
                            "contract": {"type": "sw.container"},
                            "imageId": 1,
                            "serviceName": "web",
                            "serviceId": 1,
                            "image": "local_image_web:latest",
                            "running": True,
                        },
                        "2": {
                            "environment": {},
                            "labels": {"x": "y"},
                            "privileged": True,
                            "imageId": 2,
                            "serviceName": "worker",
                            "serviceId": 2,
                            "image": "local_image_worker:latest",
                            "running": True,
                        },
                    },
                    "volumes": {"data": {}},
                    "networks": {},
                }
            },
        },
        "dependent": {"apps": {}, "devices": {}},
    }


def test_cli_v2_body_becomes_a_valid_v3_target():
    doc = to_v3(cli_body(), UUID)
    device = doc[UUID]
    assert device["name"] == "my-device"
    assert device["config"] == {"BALENA_SUPERVISOR_LOCAL_MODE": "1"}
    app = device["apps"]["1"]
    assert app["id"] == 1 and app["name"] == "localapp" and app["class"] == "fleet"
    release = app["releases"]["localrelease"]
    assert release["id"] == 1 and release["volumes"] == {"data": {}}
    web = release["services"]["web"]
    assert web == {
        "id": 1,
        "image_id": 1,
        "image": "local_image_web:latest",
        "environment": {"A": "1"},
        "labels": {},
        "running": True,
        "composition": {"restart": "always", "volumes": ["data:/data"]},
    }
    assert release["services"]["worker"]["composition"] == {"privileged": True}
    target = parse_target(doc, UUID)
    parsed = target.apps["1"]
    assert parsed.rejection is None
    assert parsed.release is not None and set(parsed.release.services) == {"web", "worker"}
    assert parsed.release.services["worker"].composition.privileged


def test_v3_passes_through_and_envelope_may_hold_v3_apps():
    v3 = {UUID: {"name": "n", "config": {}, "apps": {}}, "force": True}
    assert to_v3(v3, UUID) == {UUID: {"name": "n", "config": {}, "apps": {}}}
    v3_app = {"id": 3, "name": "a", "releases": {}}
    doc = to_v3({"local": {"name": "n", "apps": {"uuid-a": v3_app}}}, UUID)
    assert doc[UUID]["apps"] == {"uuid-a": v3_app} and doc[UUID]["config"] == {}


def test_app_without_commit_has_no_release():
    doc = to_v3({"local": {"apps": {"5": {"name": "idle"}}}}, UUID, default_name="dflt")
    assert doc[UUID] == {
        "name": "dflt",
        "config": {},
        "apps": {"5": {"id": 5, "name": "idle", "class": "fleet", "releases": {}}},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({"something": 1}, "got keys: something"),
        ({UUID: []}, "must be an object"),
        ({"local": {"apps": []}}, "'local.apps' must be an object"),
        ({"local": {"config": "x"}}, "'local.config'"),
        ({"local": {"apps": {"x": {}}}}, "numeric app id"),
        ({"local": {"apps": {"1": {"commit": "c", "releaseId": "r"}}}}, "'releaseId'"),
        ({"local": {"apps": {"1": {"services": {"1": {}}}}}}, "no 'commit'"),
        ({"local": {"apps": {"1": {"commit": "c", "releaseId": 1, "services": {"1": {}}}}}},
         "'serviceName'"),
        ({"local": {"apps": {"1": {"commit": "c", "releaseId": 1, "services": []}}}},
         "'services' must be an object"),
        ({"local": {"apps": {"1": "x"}}}, "must be an object"),
    ],
)  # fmt: skip
def test_bad_documents_say_what_is_wrong(body, message):
    with pytest.raises(TargetStateError, match=message):
        to_v3(body, UUID)


def test_duplicate_service_names_are_refused():
    body = cli_body()
    services = body["local"]["apps"]["1"]["services"]
    services["2"]["serviceName"] = "web"
    with pytest.raises(TargetStateError, match="web appears twice"):
        to_v3(body, UUID)


def test_local_images_are_pinned_by_id():
    doc = to_v3(cli_body(), UUID)
    assert service_images(doc) == {"local_image_web:latest", "local_image_worker:latest"}
    pinned = pin_local_images(doc, {"local_image_web:latest": "sha256:abc"})
    services = pinned[UUID]["apps"]["1"]["releases"]["localrelease"]["services"]
    assert services["web"]["labels"] == {LOCAL_IMAGE_ID_LABEL: "sha256:abc"}
    assert services["worker"]["labels"] == {"x": "y"}
    assert doc[UUID]["apps"]["1"]["releases"]["localrelease"]["services"]["web"]["labels"] == {}
    # a different image id is a different config: the container is recreated
    again = pin_local_images(doc, {"local_image_web:latest": "sha256:def"})
    releases = [parse_target(d, UUID).apps["1"].release for d in (pinned, again)]
    hashes = [r.services["web"].config_hash() for r in releases if r is not None]
    assert hashes[0] != hashes[1]


def test_pinning_leaves_malformed_parts_for_the_parser():
    weird = {UUID: {"apps": {"a": {"releases": {"r": {"services": {"s": "nope"}}}}}}}
    assert pin_local_images(weird, {"x": "y"}) == weird
    assert service_images({UUID: {"apps": "nope"}}) == set()
    digest = {
        UUID: {"apps": {"a": {"releases": {"r": {"services": {"s": {"image": "r@sha256:1"}}}}}}}
    }
    assert service_images(digest) == set()
