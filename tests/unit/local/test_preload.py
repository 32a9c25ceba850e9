"""Preloaded apps.json: the shapes balena-preload writes, and loading it once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.errors import TargetStateError
from agent.local.preload import MARK_KEY, load_preloaded, parse_apps_json
from agent.store import Store

DEVICE = "d" * 32
APP = "a" * 32
IMAGE = "registry2.balena-cloud.com/v2/abc@sha256:" + "1" * 64
V3_APPS: dict[str, Any] = {
    APP: {
        "id": 12,
        "name": "kiosk",
        "class": "fleet",
        "releases": {
            "c" * 32: {
                "id": 34,
                "services": {
                    "main": {
                        "id": 5,
                        "image_id": 6,
                        "image": IMAGE,
                        "environment": {},
                        "labels": {},
                        "composition": {"restart": "always"},
                    }
                },
                "volumes": {},
                "networks": {},
            }
        },
    }
}


def test_v3_apps_json_becomes_the_devices_target_document():
    doc, pin = parse_apps_json({"apps": V3_APPS, "config": {"A": "1"}, "pinDevice": True}, DEVICE)
    assert doc == {DEVICE: {"name": "", "config": {"A": "1"}, "apps": V3_APPS}}
    assert pin is True


def test_older_apps_json_keyed_by_app_id_is_converted():
    v2 = {
        "apps": {
            "12": {
                "name": "kiosk",
                "commit": "c" * 32,
                "releaseId": 34,
                "services": {"5": {"serviceName": "main", "imageId": 6, "image": IMAGE}},
            }
        },
        "config": {},
    }
    doc, _ = parse_apps_json(v2, DEVICE)
    assert doc is not None
    (app,) = doc[DEVICE]["apps"].values()
    release = app["releases"]["c" * 32]
    assert (app["id"], release["id"], release["services"]["main"]["image"]) == (12, 34, IMAGE)


@pytest.mark.parametrize("raw", [{}, {"apps": {}, "config": {}}])
def test_an_empty_apps_json_loads_nothing(raw):
    assert parse_apps_json(raw, DEVICE) == (None, False)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ([{"appId": 1}], "single-container"),
        ({"apps": []}, "'apps' must be an object"),
        ({"apps": V3_APPS, "config": {"A": 1}}, "'config' must be an object of strings"),
        ({"apps": {"12": "kiosk"}}, "app 12: must be an object"),
    ],
)
def test_a_malformed_apps_json_is_refused_with_a_reason(raw, why):
    with pytest.raises(TargetStateError, match=why):
        parse_apps_json(raw, DEVICE)


def test_loaded_once_persisted_as_the_target_and_set_aside(tmp_path):
    store = Store(tmp_path / "data")
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": V3_APPS, "config": {}}))
    loaded = load_preloaded(path, DEVICE, store)
    assert loaded is not None
    assert (loaded.apps, loaded.images) == (["kiosk"], {IMAGE})
    assert store.get("target") == {
        "etag": None,
        "body": {DEVICE: {"name": "", "config": {}, "apps": V3_APPS}},
    }
    assert store.get(MARK_KEY)["apps"] == [APP]
    assert json.loads(path.read_text()) == {}  # as the reference leaves it
    assert json.loads((tmp_path / "apps.json.preloaded").read_text())["apps"] == V3_APPS
    # a second start: remembered, nothing loaded again even if the file comes back
    path.write_text(json.dumps({"apps": V3_APPS, "config": {}}))
    store.delete("target")
    assert load_preloaded(path, DEVICE, store) is None


def test_a_device_with_a_target_of_its_own_ignores_the_preload(tmp_path):
    store = Store(tmp_path / "data")
    store.put("target", {"etag": '"e"', "body": {DEVICE: {"apps": {}}}})
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": V3_APPS}))
    assert load_preloaded(path, DEVICE, store) is None
    assert json.loads(path.read_text()) == {"apps": V3_APPS}


def test_a_broken_file_is_logged_and_nothing_is_loaded(tmp_path):
    store = Store(tmp_path / "data")
    path = tmp_path / "apps.json"
    path.write_text('{"apps": ')
    with capture_logs() as logs:
        assert load_preloaded(path, DEVICE, store) is None
        assert load_preloaded(tmp_path / "absent.json", DEVICE, store) is None
    (bad,) = [e for e in logs if e["event"] == "preload_invalid"]
    assert "not valid JSON" in bad["reason"] and bad["path"] == str(path)
    assert store.get("target") is None
