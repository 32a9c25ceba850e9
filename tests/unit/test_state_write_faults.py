"""State writes on a full or misbehaving disk (see tests/faults for the same end to end)."""

import os
import random
import signal
import tempfile

import pytest

from agent.api.keys import ApiKeys
from agent.cloud.client import TargetFetch
from agent.cloud.poller import Poller
from agent.errors import StoreError
from agent.status.board import StatusBoard
from agent.store import Store
from testbed import testhooks

ENOSPC = OSError(28, "No space left on device")


def test_short_writes_are_completed_not_renamed_torn(tmp_path, monkeypatch):
    store = Store(tmp_path)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    store.put("status", {"value": "x" * 50})
    monkeypatch.undo()
    assert store.get("status") == {"value": "x" * 50}


def test_a_short_write_then_enospc_keeps_the_previous_value(tmp_path, monkeypatch):
    store = Store(tmp_path)
    store.put("status", {"v": 1})
    real_write = os.write
    calls = []

    def filling_up(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:4]))  # what fits
        raise ENOSPC

    monkeypatch.setattr(os, "write", filling_up)
    with pytest.raises(StoreError, match="No space left"):
        store.put("status", {"v": 2, "pad": "y" * 40})
    monkeypatch.undo()
    assert store.get("status") == {"v": 1}
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_room_for_the_temp_file_is_a_store_error(tmp_path, monkeypatch):
    store = Store(tmp_path)
    store.put("target", {"v": 1})

    def no_inode(*args, **kwargs):
        raise ENOSPC

    monkeypatch.setattr(tempfile, "mkstemp", no_inode)
    with pytest.raises(StoreError, match="No space left"):
        store.put("target", {"v": 2})
    monkeypatch.undo()
    assert store.get("target") == {"v": 1}


class FullStore(Store):
    """A store whose writes fail while `full`."""

    full = False

    def put(self, key, value):
        if self.full:
            raise StoreError(f"cannot write {key}: No space left on device")
        super().put(key, value)


class Answers:
    def __init__(self, answers):
        self.answers = list(answers)

    async def fetch_target(self, etag):
        return self.answers.pop(0)


async def test_a_target_that_could_not_be_persisted_is_written_after_a_later_poll(tmp_path):
    store = FullStore(tmp_path)
    store.put("target", {"etag": '"e1"', "body": {"r": 1}})
    accepted = []

    def accept(body, source):
        accepted.append(body)
        return True

    poller = Poller(
        Answers([TargetFetch(True, '"e2"', {"r": 2}), TargetFetch(False, '"e2"')]),  # type: ignore[arg-type]
        store,
        StatusBoard(store),
        accept,
        lambda: 100.0,
        rng=random.Random(0),
    )
    store.full = True
    await poller.poll_once()
    assert accepted == [{"r": 2}], "the target is applied even though it can't be persisted"
    assert store.get("target") == {"etag": '"e1"', "body": {"r": 1}}  # the old one, intact
    store.full = False
    await poller.poll_once()  # a 304: nothing new, but the unsaved target is written
    assert store.get("target") == {"etag": '"e2"', "body": {"r": 2}}


def test_app_keys_work_from_memory_on_a_full_disk_and_are_persisted_later(tmp_path):
    store = FullStore(tmp_path)
    keys = ApiKeys(store)
    store.full = True
    keys.ensure_apps({7})  # must not raise: the target that brought app 7 is still applied
    assert 7 in keys.app_keys
    keys.flush()
    assert "7" not in (store.get("api-keys") or {}).get("apps", {})
    store.full = False
    keys.flush()
    assert store.get("api-keys")["apps"]["7"] == keys.app_keys[7]


def test_crash_hook_is_off_unless_both_variables_are_set():
    assert testhooks._parse({}) is None
    assert testhooks._parse({testhooks.CRASH_ENV: "pull_done:1"}) is None
    assert testhooks._parse({testhooks.HOOKS_ENV: "1", testhooks.CRASH_ENV: "pull_done"}) is None
    assert testhooks._parse({testhooks.HOOKS_ENV: "1", testhooks.CRASH_ENV: "x:0"}) is None
    on = {testhooks.HOOKS_ENV: "1", testhooks.CRASH_ENV: "state_write.status:3"}
    assert testhooks._parse(on) == ("state_write.status", 3)


def test_crash_hook_kills_at_the_nth_arrival(monkeypatch):
    kills = []
    monkeypatch.setattr(testhooks, "_CRASH_AT", ("step_done", 2))
    monkeypatch.setattr(testhooks, "_counts", {})
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setattr(os, "write", lambda fd, data: len(data))
    for name in ("step_done", "pull_done", "step_started"):
        testhooks.crash_processor(None, "info", {"event": name})
    assert kills == []
    testhooks.reached("step_done")
    assert kills == [(os.getpid(), signal.SIGKILL)]
