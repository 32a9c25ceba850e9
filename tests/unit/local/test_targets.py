"""Target intake (agent/local/targets.py) and the fleet's config vars (agent/local/fleetvars.py):
what happens to a document from each source, without an agent."""

from types import SimpleNamespace
from typing import Any

from agent.config import FleetConfig
from agent.events.bus import Bus
from agent.events.kinds import (
    AppRejected,
    ContractServicesNotRun,
    FleetConfigChanged,
    Payload,
    TargetAccepted,
)
from agent.local.fleetvars import FleetVars
from agent.local.intake import TargetIntake
from agent.local.targets import TARGET_KEY, TargetService
from agent.model import TargetState
from agent.model.contracts import DeviceContract
from agent.model.source import TargetSource
from agent.store import Store
from tests.unit.local.documents import UUID, app, doc

CONTRACT = DeviceContract(supervisor_version="17.0.0", device_type="generic", device_arch="amd64")


def make(tmp_path, local_mode=False, adjust=lambda body: body):
    store = Store(tmp_path)
    board = SimpleNamespace(target_error=None, config_errors=[])
    applied: list[TargetState] = []
    new_apps: list[set[int]] = []
    bus = Bus()
    fleet = FleetVars(900_000, board, local_mode=local_mode, bus=bus)
    service = TargetService(
        UUID,
        CONTRACT,
        store,
        TargetIntake(store, applied.append),
        fleet,
        board,
        adjust=adjust,
        new_apps=new_apps.append,
        bus=bus,
    )
    return SimpleNamespace(
        service=service,
        board=board,
        applied=applied,
        new_apps=new_apps,
        fleet=fleet,
        store=store,
        bus=bus,
    )


def test_a_cloud_target_is_applied_with_its_config_vars_and_keys(tmp_path):
    t = make(tmp_path)
    body = doc({"a": app(1)}, {"BALENA_SUPERVISOR_POLL_INTERVAL": "60000"})
    assert t.service.accept(body, TargetSource.CLOUD)
    assert [set(x.apps) for x in t.applied] == [{"a"}]
    assert t.fleet.current.poll_interval_ms == 60_000 and t.fleet.poll_interval_s == 60.0
    assert t.new_apps == [{1}]
    assert t.board.target_error is None and t.service.base is t.applied[-1]


def test_a_malformed_document_is_refused_whole_and_shown(tmp_path):
    t = make(tmp_path)
    assert t.service.accept(doc({"a": app(1)}), TargetSource.CLOUD)
    assert not t.service.accept({UUID: {"apps": "nope"}}, TargetSource.CLOUD)
    assert t.board.target_error  # the reason, for the API and the CLI
    assert len(t.applied) == 1  # the running target stays


def test_a_bad_config_var_is_shown_and_keeps_the_previous_value(tmp_path):
    t = make(tmp_path)
    changes: list[FleetConfig] = []
    t.bus.subscribe(FleetConfigChanged, lambda e: changes.append(e.config))
    t.service.accept(doc({}, {"BALENA_SUPERVISOR_POLL_INTERVAL": "60000"}), TargetSource.CLOUD)
    t.service.accept(doc({}, {"BALENA_SUPERVISOR_POLL_INTERVAL": "soon"}), TargetSource.CLOUD)
    assert t.fleet.current.poll_interval_ms == 60_000
    assert t.board.config_errors and "soon" in t.board.config_errors[0]
    assert [c.poll_interval_ms for c in changes] == [60_000]  # told once, on the change


def test_the_cloud_document_is_adjusted_by_rollback_but_a_local_one_is_not(tmp_path):
    seen: list[Any] = []

    def adjust(body: Any) -> Any:
        seen.append(body)
        return body

    t = make(tmp_path, local_mode=True, adjust=adjust)
    cloud = doc({"a": app(1)})
    t.service.accept(cloud, TargetSource.CLOUD)
    assert t.service.accept_local(doc({"l": app(2)})) is None
    assert seen == [cloud]
    assert set(t.service.base.apps) == {"l"}


def test_a_local_post_with_a_bad_app_applies_nothing(tmp_path):
    t = make(tmp_path, local_mode=True)
    bad = app(2)
    bad["releases"]["r1"]["services"]["main"]["image"] = ""  # no image: the app is rejected
    refused = t.service.accept_local(doc({"l": bad}))
    assert refused
    assert t.applied == []


def test_document_is_the_persisted_cloud_target_or_the_local_one(tmp_path):
    t = make(tmp_path)
    assert t.service.document() is None
    body = doc({"a": app(1)})
    t.store.put(TARGET_KEY, {"etag": "e", "body": body})  # as the poller persists it
    assert t.service.document() == body[UUID]
    t2 = make(tmp_path / "local", local_mode=True)
    local = doc({"l": app(2)})
    assert t2.service.accept_local(local) is None
    assert t2.service.document() == local[UUID]


def test_restore_applies_the_persisted_then_the_saved_local_target(tmp_path):
    first = make(tmp_path, local_mode=True)
    assert first.service.accept_local(doc({"l": app(2)})) is None
    again = make(tmp_path, local_mode=True)  # a restart: the same store
    again.service.restore(doc({"a": app(1)}))
    assert set(again.applied[-1].apps) == {"l"}
    assert again.service.local_mode


def test_an_accepted_target_its_rejected_apps_and_services_not_run_are_told_on_the_bus(tmp_path):
    t = make(tmp_path)
    told: list[Payload] = []
    for kind in (TargetAccepted, AppRejected, ContractServicesNotRun):
        t.bus.subscribe(kind, told.append)
    unmet = {"type": "sw.container", "requires": [{"type": "hw.device-type", "slug": "rpi3"}]}
    a, b = app(1, services=("main", "opt")), app(2, release="r9")
    a["releases"]["r1"]["services"]["opt"].update(
        contract=unmet, labels={"io.balena.features.optional": "1"}
    )
    b["releases"]["r9"]["services"]["main"]["contract"] = unmet
    assert t.service.accept(doc({"a": a, "b": b}), TargetSource.CLOUD)
    assert told == [
        ContractServicesNotRun("app1", ("opt",)),
        AppRejected("app2", "b", "r9", "app app2: services with unmet requirements: main"),
        TargetAccepted("cloud", ("app1", "app2")),
    ]
    assert not t.service.accept({UUID: {"apps": "nope"}}, TargetSource.CLOUD)
    assert len(told) == 3  # a refused document is not accepted
