import threading
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from agent.api.keys import GLOBAL, ApiKeys, Scope
from agent.errors import StoreError
from agent.store import Store


def test_global_key_is_created_once_and_persisted(tmp_path):
    keys = ApiKeys(Store(tmp_path))
    assert len(keys.global_key) == 32
    assert ApiKeys(Store(tmp_path)).global_key == keys.global_key
    assert keys.lookup(keys.global_key) == GLOBAL


def test_app_keys_are_scoped_and_persisted(tmp_path):
    keys = ApiKeys(Store(tmp_path))
    view = keys.app_keys
    keys.ensure_apps({5, 6, 0})
    assert set(view) == {5, 6}  # a live view; app id 0 (invalid) gets none
    assert keys.lookup(view[5]) == Scope(5)
    again = ApiKeys(Store(tmp_path))
    assert again.app_keys == view
    keys.ensure_apps({5})
    assert again.app_keys[5] == keys.app_keys[5]


def test_unknown_keys_and_rotation(tmp_path):
    keys = ApiKeys(Store(tmp_path))
    keys.ensure_apps({5})
    assert keys.lookup("") is None and keys.lookup("x" * 32) is None
    assert keys.lookup("ü" * 3) is None
    old_global, old_app = keys.global_key, keys.app_keys[5]
    new_app = keys.regenerate(Scope(5))
    assert keys.lookup(old_app) is None and keys.lookup(new_app) == Scope(5)
    assert keys.global_key == old_global
    new_global = keys.regenerate(GLOBAL)
    assert keys.lookup(old_global) is None and keys.lookup(new_global) == GLOBAL
    assert ApiKeys(Store(tmp_path)).global_key == new_global


def test_scope_allows():
    assert GLOBAL.allows(1) and GLOBAL.is_global
    assert Scope(3).allows(3) and not Scope(3).allows(4) and not Scope(3).is_global


class _Disk(Store):
    """A store that records which thread writes, and can be made full."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.full = False
        self.writers: list[int] = []

    def put(self, key: str, value: Any) -> None:
        self.writers.append(threading.get_ident())
        if self.full:
            raise StoreError("cannot write api-keys: No space left on device")
        super().put(key, value)


async def test_keys_are_written_off_the_event_loop_and_retried_after_a_full_disk(tmp_path):
    store = _Disk(tmp_path)
    keys = ApiKeys(store)
    loop_thread = threading.get_ident()
    with capture_logs() as logs:
        keys.ensure_apps({5})
        await keys.drain()
        assert store.writers[-1] != loop_thread  # the disk is never waited on by the loop
        assert Store(tmp_path).get("api-keys")["apps"] == {"5": keys.app_keys[5]}

        store.full = True
        keys.ensure_apps({6})
        await keys.drain()
        keys.flush()  # after a poll, the disk still full
        await keys.drain()
        assert keys.lookup(keys.app_keys[6]) == Scope(6)  # works from memory meanwhile
        store.full = False
        keys.flush()
        await keys.drain()
    assert "6" in Store(tmp_path).get("api-keys")["apps"]
    events = [e["event"] for e in logs if e["event"].startswith("api_keys_")]
    assert events == ["api_keys_persist_failed", "api_keys_persisted"]  # one failure line
