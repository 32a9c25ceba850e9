import threading

from agent.local.intake import TargetIntake
from agent.model import TargetState, parse_target
from agent.model.source import TargetSource
from agent.store import Store
from tests.unit.local.documents import UUID, app, doc


def target(apps, config=None):
    body = doc(apps, config)
    return parse_target(body, UUID), body


def make(tmp_path):
    applied: list[TargetState] = []
    intake = TargetIntake(Store(tmp_path), applied.append)
    return intake, applied


def test_cloud_targets_apply_outside_local_mode(tmp_path):
    intake, applied = make(tmp_path)
    cloud, _ = target({"a": app(1)})
    intake.accept(cloud, "cloud", local_mode=False)
    assert applied == [cloud] and intake.base == cloud


def test_local_mode_keeps_cloud_target_until_a_local_one_arrives(tmp_path):
    intake, applied = make(tmp_path)
    cloud, _ = target({"a": app(1)}, {"BALENA_SUPERVISOR_LOCAL_MODE": "1"})
    intake.accept(cloud, "cloud", local_mode=True)
    assert intake.base == cloud
    local, body = target({"l": app(2)})
    intake.accept(local, "local", local_mode=True, body=body)
    assert applied[-1] == local
    assert intake.saved_local() == body
    newer, _ = target({"a": app(1, "r2")}, {"BALENA_SUPERVISOR_LOCAL_MODE": "1"})
    intake.accept(newer, "cloud", local_mode=True)
    assert applied[-1] == local  # cloud targets are kept, not applied
    assert intake.cloud == newer


def test_leaving_local_mode_drops_the_local_target(tmp_path):
    intake, applied = make(tmp_path)
    cloud, _ = target({}, {"BALENA_SUPERVISOR_LOCAL_MODE": "1"})
    intake.accept(cloud, "cloud", local_mode=True)
    local, body = target({"l": app(2)})
    intake.accept(local, "local", local_mode=True, body=body)
    back, _ = target({"a": app(1)})
    intake.accept(back, "cloud", local_mode=False)
    assert applied[-1] == back and intake.local is None and intake.saved_local() is None


def test_local_config_cannot_switch_local_mode(tmp_path):
    intake, _ = make(tmp_path)
    cloud, _ = target({}, {"BALENA_SUPERVISOR_LOCAL_MODE": "1", "OTHER": "x"})
    intake.accept(cloud, "cloud", local_mode=True)
    local, _ = target(
        {}, {"BALENA_SUPERVISOR_LOCAL_MODE": "0", "BALENA_SUPERVISOR_POLL_INTERVAL": "5000"}
    )
    assert intake.local_config_vars(local) == {
        "BALENA_SUPERVISOR_POLL_INTERVAL": "5000",
        "BALENA_SUPERVISOR_LOCAL_MODE": "1",
    }


def test_an_emptied_app_has_no_services_until_restored(tmp_path):
    intake, applied = make(tmp_path)
    cloud, _ = target({"a": app(1, services=("main", "aux")), "b": app(2)})
    intake.accept(cloud, "cloud", local_mode=False)
    intake.empty_app("a", True)
    emptied = applied[-1]
    assert emptied.apps["a"].release.services == {}
    assert emptied.apps["a"].release.uuid == "r1"
    assert emptied.apps["b"] == cloud.apps["b"]
    newer, _ = target({"a": app(1, "r2"), "b": app(2)})
    intake.accept(newer, "cloud", local_mode=False)  # still held while the action runs
    assert applied[-1].apps["a"].release.services == {}
    intake.empty_app("a", False)
    assert applied[-1] == newer


class _WatchedStore(Store):
    """Records which thread writes or deletes."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.threads: list[int] = []

    def put(self, key, value) -> None:
        self.threads.append(threading.get_ident())
        super().put(key, value)

    def delete(self, key) -> None:
        self.threads.append(threading.get_ident())
        super().delete(key)


async def test_the_local_target_is_saved_and_dropped_off_the_event_loop_in_order(tmp_path):
    """A local target posted and local mode left at once: the write and the removal happen in
    worker threads, the removal last (the dropped target doesn't come back after a restart)."""
    store = _WatchedStore(tmp_path)
    intake = TargetIntake(store, lambda _target: None)
    cloud, _ = target({}, {"BALENA_SUPERVISOR_LOCAL_MODE": "1"})
    intake.accept(cloud, TargetSource.CLOUD, local_mode=True)
    local, body = target({"l": app(2)})
    intake.accept(local, TargetSource.LOCAL, local_mode=True, body=body)
    await intake.flush()
    assert intake.saved_local() == body
    intake.accept(local, TargetSource.LOCAL, local_mode=True, body=body)
    intake.accept(
        target({"a": app(1)})[0], TargetSource.CLOUD, local_mode=False
    )  # before it's written
    await intake.flush()
    assert Store(tmp_path).get("local-target") is None
    assert store.threads and threading.get_ident() not in store.threads
