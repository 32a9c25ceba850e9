"""config.json write-back: other keys and the layout kept, atomic."""

from __future__ import annotations

import json
import os

import pytest

from agent.cloud import configjson
from agent.cloud.configjson import render, update_config_json
from agent.errors import ConfigError

BALENA = {
    "applicationId": 1234,
    "apiKey": "prov",
    "deviceType": "raspberrypi4-64",
    "wifiSsid": "x",
    "os": {"network": {"connectivity": {"uri": "https://api.example"}}},
}


def test_compact_file_stays_compact_and_keeps_every_other_key_in_order():
    text = json.dumps(BALENA, separators=(",", ":"))
    out = render(text, {"registered_at": 5, "deviceId": 9}, remove=["apiKey"])
    assert "\n" not in out
    data = json.loads(out)
    assert list(data) == [
        "applicationId",
        "deviceType",
        "wifiSsid",
        "os",
        "registered_at",
        "deviceId",
    ]
    assert data["os"] == BALENA["os"]


def test_indented_file_stays_indented_with_its_indent_and_final_newline():
    text = json.dumps(BALENA, indent=4) + "\n"
    out = render(text, {"uuid": "abc"})
    assert out.endswith("}\n")
    assert '\n    "uuid": "abc"' in out
    assert json.loads(out) == {**BALENA, "uuid": "abc"}


def test_update_is_atomic_a_failed_rename_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BALENA))
    os.chmod(path, 0o600)
    before = path.read_text()

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(configjson.os, "replace", broken)
    with pytest.raises(ConfigError, match="No space left"):
        update_config_json(path, {"deviceId": 1})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    monkeypatch.undo()
    new = update_config_json(path, {"deviceId": 1}, remove=["apiKey"])
    assert json.loads(path.read_text()) == new and new["deviceId"] == 1 and "apiKey" not in new
    assert os.stat(path).st_mode & 0o777 == 0o600  # the mode is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_file_that_is_not_a_json_object_is_a_config_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1]")
    with pytest.raises(ConfigError, match="JSON object"):
        update_config_json(path, {"deviceId": 1})
    assert path.read_text() == "[1]"
