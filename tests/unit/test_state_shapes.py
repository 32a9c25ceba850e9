"""State files of the wrong shape are set aside like torn ones; every loader starts on defaults.

Each loader is the real code that reads its file at start-up (the agent's constructors), fed
valid JSON of the wrong shape: it must not raise, must come up with its defaults, and the file
must be kept aside as `<key>.corrupt` with a log line saying what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agent.api.keys import ApiKeys
from agent.cloud.poller import Poller
from agent.cloud.reporter import Reporter, ReportSources
from agent.cloud.tags import DeviceTags
from agent.local.intake import TargetIntake
from agent.model import UpdateStatus
from agent.reconcile.executor import ManagedImages
from agent.reconcile.rollback import load_state
from agent.shapes import STATE_SHAPES
from agent.status.board import StatusBoard
from agent.store import Store


class _NoClient:
    uuid = "dev"

    async def fetch_target(self, etag: str | None) -> Any:
        raise AssertionError("not polled here")

    async def patch_state(self, body: Any) -> None:
        raise AssertionError("not reported here")


def _api_keys(store: Store) -> Any:
    keys = ApiKeys(store)
    assert len(keys.global_key) == 32  # a fresh key when none could be read
    return keys.app_keys


def _status(store: Store) -> Any:
    board = StatusBoard(store)
    return {"apps": board.apps, "last_poll": board.last_poll}


def _images(store: Store) -> Any:
    return ManagedImages(store).ids


def _target(store: Store) -> Any:
    poller = Poller(_NoClient(), store, StatusBoard(store), lambda b, s: True, lambda: 10.0)  # type: ignore[arg-type]
    saved = poller.load_saved()
    return None if saved is None else (saved.etag, saved.body)


def _report_cache(store: Store) -> Any:
    sources = ReportSources(dict, dict, lambda: True)
    reporter = Reporter(_NoClient(), store, StatusBoard(store), sources)  # type: ignore[arg-type]
    return reporter.acked, reporter._metrics_sent_wall


def _local_target(store: Store) -> Any:
    return TargetIntake(store, lambda target: None).saved_local()


class _NoTagsClient:
    async def device_tags(self) -> list[dict[str, Any]]:
        raise AssertionError("not fetched here")

    async def patch_device_tags(self, tags: dict[str, str]) -> None:
        raise AssertionError("not sent here")


def _device_tags(store: Store) -> Any:
    tags = DeviceTags(_NoTagsClient(), store, lambda: 10.0)
    return tags.pending(), tags._reported, tags._known


LOADERS: dict[str, tuple[Callable[[Store], Any], Any]] = {
    # key: (load as the agent does at start, what it holds with no file)
    "api-keys": (_api_keys, {}),
    "status": (_status, {"apps": {}, "last_poll": None}),
    "images": (_images, set()),
    "target": (_target, None),
    "report-cache": (_report_cache, ({}, 0.0)),
    "local-target": (_local_target, None),
    "device-tags": (_device_tags, ({}, {}, [])),
    "rollback": (load_state, {"apps": {}, "failed": {}}),
}

KEY = "0123456789abcdef0123456789abcdef"

APP_STATUS = {
    "app_id": 1,
    "name": "demo",
    "release_uuid": "r1",
    "current_release_uuid": None,
    "update_status": "done",
    "since": 1.5,
    "reason": None,
}

# key -> (wrong value, the path the log must name)
WRONG: list[tuple[str, Any, str]] = [
    ("api-keys", [], "$"),
    ("api-keys", "key", "$"),
    ("api-keys", {"global": 5}, "$.global"),
    ("api-keys", {"global": "0"}, "$.global"),  # a key anyone could guess is no key
    ("api-keys", {"global": KEY, "apps": []}, "$.apps"),
    ("api-keys", {"global": KEY, "apps": {"7": {"key": KEY}}}, "$.apps.7"),
    ("api-keys", {"global": KEY, "apps": {"7": "x"}}, "$.apps.7"),
    ("api-keys", {"global": KEY, "apps": {"²": KEY}}, "$.apps.²"),  # '²'.isdigit() is True
    ("status", [], "$"),
    ("status", {"apps": []}, "$.apps"),
    ("status", {"apps": {"a": "done"}}, "$.apps.a"),
    ("status", {"apps": {"a": {**APP_STATUS, "app_id": "1"}}}, "$.apps.a.app_id"),
    ("status", {"apps": {"a": {**APP_STATUS, "since": 10**400}}}, "$.apps.a.since"),
    ("status", {"apps": {"a": {**APP_STATUS, "name": ["x"]}}}, "$.apps.a.name"),
    ("status", {"apps": {}, "last_poll": "yesterday"}, "$.last_poll"),
    ("images", {"sha256:1": True}, "$"),
    ("images", ["sha256:1", ["sha256:2"]], "$[1]"),
    ("images", [None], "$[0]"),
    ("target", [], "$"),
    ("target", {"etag": 5, "body": {}}, "$.etag"),
    ("target", {"etag": '"e"', "body": [1]}, "$.body"),
    ("report-cache", [], "$"),
    ("report-cache", {"acked": [], "metrics_at": 0}, "$.acked"),
    ("report-cache", {"acked": {}, "metrics_at": None}, "$.metrics_at"),
    ("report-cache", {"acked": {}, "metrics_at": {"t": 1}}, "$.metrics_at"),
    ("local-target", ["apps"], "$"),
    ("local-target", 3, "$"),
    ("device-tags", [], "$"),
    ("device-tags", {"target": {"floor": 3}}, "$.target.floor"),
    ("device-tags", {"reported": ["floor"]}, "$.reported"),
    ("device-tags", {"known": {"floor": "3"}}, "$.known"),
    ("device-tags", {"known": ["floor"]}, "$.known[0]"),
    ("rollback", [], "$"),
    ("rollback", {"apps": {"a": {"current": {"release": 5}}}}, "$.apps.a.current.release"),
    (
        "rollback",
        {"apps": {"a": {"current": {"release": "r", "entry": []}}}},
        "$.apps.a.current.entry",
    ),
    ("rollback", {"failed": {"r": {"app": "a", "reason": None}}}, "$.failed.r.reason"),
]


def _write(root: Path, key: str, value: Any) -> str:
    text = json.dumps(value)
    (root / f"{key}.json").write_text(text)
    return text


@pytest.mark.parametrize(("key", "value", "where"), WRONG)
def test_a_wrong_shape_is_set_aside_and_the_loader_starts_on_defaults(
    tmp_path: Path, key: str, value: Any, where: str
) -> None:
    text = _write(tmp_path, key, value)
    load, default = LOADERS[key]
    with capture_logs() as logs:
        assert load(Store(tmp_path)) == default
    events = [e for e in logs if e["event"] == "store_wrong_shape"]
    assert len(events) == 1 and events[0]["key"] == key
    assert events[0]["error"].startswith(f"{where}: "), events[0]["error"]
    assert (tmp_path / f"{key}.corrupt").read_text() == text  # kept for a human
    if key != "api-keys":  # the keys are written anew (a fresh global key)
        assert not (tmp_path / f"{key}.json").exists()


def test_every_state_file_has_a_shape_and_a_loader() -> None:
    assert set(STATE_SHAPES) == set(LOADERS) == {key for key, _, _ in WRONG}


def test_what_the_agent_writes_loads_back_unchanged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    keys = ApiKeys(store)
    keys.ensure_apps({7, 12})
    board = StatusBoard(store)
    board.mark_poll(True)  # persisted with the next status change
    board.ensure_app("a", 7, "demo", "r1")
    board.set_update_status("a", "r1", UpdateStatus.DOWNLOADING, reason="pulling")
    images = ManagedImages(store)
    images.add("sha256:" + "1" * 64)
    store.put("target", {"etag": None, "body": {"dev": {"apps": {}}}})
    store.put("report-cache", {"acked": {"status": "Idle"}, "metrics_at": 12.5})
    store.put("local-target", {"dev": {"apps": {}}})

    with capture_logs() as logs:
        fresh = Store(tmp_path)
        assert ApiKeys(fresh).app_keys == keys.app_keys
        assert _status(fresh) == {"apps": board.apps, "last_poll": board.last_poll}
        assert _images(fresh) == images.ids
        assert _target(fresh) == (None, {"dev": {"apps": {}}})
        assert _report_cache(fresh) == ({"status": "Idle"}, 12.5)
        assert _local_target(fresh) == {"dev": {"apps": {}}}
    assert not [e for e in logs if e["log_level"] in ("error", "warning")], logs
    assert not list(tmp_path.glob("*.corrupt"))


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def _near(key: str) -> st.SearchStrategy[Any]:
    """JSON that is often almost right for `key`: the right top level with anything inside."""
    fields = {
        "api-keys": ["global", "apps"],
        "status": ["apps", "last_poll"],
        "target": ["etag", "body"],
        "report-cache": ["acked", "metrics_at"],
        "local-target": ["dev"],
    }.get(key)
    if fields is None:
        return st.lists(_json, max_size=4) | _json
    return st.dictionaries(st.sampled_from(fields), _json, max_size=2) | _json


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_json_at_all_stops_a_loader(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    root = tmp_path_factory.mktemp("state")
    for key, (load, _) in LOADERS.items():
        value = data.draw(_near(key), label=key)
        (root / f"{key}.json").write_text(json.dumps(value))
        with capture_logs():
            load(Store(root))  # never raises: loads it, or sets it aside and starts afresh
