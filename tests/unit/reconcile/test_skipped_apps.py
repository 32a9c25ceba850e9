"""Host apps, hostapp images and the supervisor's own service: no step is ever planned for
them, they don't hold anything back, and they are reported as the reference reports them."""

from agent.cloud.reporter import apps_report
from agent.model import ServiceStatus
from agent.model import UpdateStatus as U
from agent.reconcile.views import service_views
from agent.status.board import StatusBoard
from agent.store import Store
from tests.unit.reconcile.factories import (
    app,
    container,
    converge,
    described,
    image,
    network,
    release,
    state,
    svc,
    target,
    volume,
)

SUP = "2e66a95795c149959c69472a8c2f92b8"  # balena's armv7hf supervisor app
HOSTAPP = {"io.balena.image.class": "hostapp", "io.balena.image.store": "root"}
EXT = {"io.balena.image.class": "hostapp-extension"}


def mixed():
    host = app(
        1,
        release(
            "rh",
            {"main": svc("balena/os:6", labels=HOSTAPP)},
            volumes={"data": {}},
            networks={"lan": {}},
        ),
        name="balenaOS",
    )
    host["is_host"] = True
    return target(
        {
            "host": host,
            SUP: app(2, release("rs", {"balena-supervisor": svc("balena/sv:17")}), name="sv"),
            "fleet": app(
                3,
                release(
                    "rf",
                    {"ext": svc("ext:1", labels=EXT), "web": svc("web:1")},
                    volumes={"v": {}},
                ),
                name="fleet",
            ),
            "plain": app(4, release("rp", {"main": svc("plain:1")}), name="plain"),
        }
    )


def test_only_the_runnable_services_get_steps_and_every_app_settles():
    tgt = mixed()
    final, plans = converge(state(), tgt)
    steps = [d for p in plans for d in described(p.steps)]
    assert sorted(d for d in steps if d.startswith(("Start", "Pull"))) == [
        "Pull plain:1 for main",
        "Pull web:1 for web",
        "Start fleet/web",
        "Start plain/main",
    ]
    # nothing created for the host app nor the supervisor's (their releases' volumes and
    # networks included); the fleet app's own volume is
    creates = [d for d in steps if d.startswith("Create")]
    assert creates == ["CreateVolume 3_v", "CreateNetwork 3_default", "CreateNetwork 4_default"]
    assert {c.app_uuid for c in final.containers} == {"fleet", "plain"}
    last = plans[-1].apps
    assert {u: a.status for u, a in last.items()} == {u: U.DONE for u in tgt.apps}
    assert "host app (balenaOS)" in str(last["host"].reason)
    assert "supervisor's own service" in str(last[SUP].reason)
    assert plans[0].apps["host"].status is U.DONE  # settled from the first pass on


def test_nothing_is_removed_because_of_them():
    tgt = mixed()
    current = state(
        # a container and network some other tool left under the host app's uuid
        container("c-os", "host", "main", app_id=1),
        network("1_lan", app_id=1, app_uuid="host"),
        volume("1_data", app_id=1, app_uuid="host"),
        # the images of skipped services, pulled by an earlier agent: kept
        image("balena/sv:17"),
        image("ext:1"),
        image("balena/os:6"),
    )
    final, plans = converge(current, tgt)
    steps = [d for p in plans for d in described(p.steps)]
    assert not [d for d in steps if d.startswith(("Kill", "Remove"))], steps
    assert "c-os" in {c.id for c in final.containers}


def test_a_skipped_dependency_does_not_hold_a_service_back():
    tgt = target(
        {
            "f": app(
                3,
                release(
                    "rf",
                    {
                        "ext": svc("ext:1", labels=EXT),
                        "web": svc("web:1", composition={"depends_on": ["ext"]}),
                    },
                ),
            )
        }
    )
    final, plans = converge(state(image("web:1")), tgt)
    assert [c.service_name for c in final.containers] == ["web"]
    assert plans[-1].apps["f"].status is U.DONE and not plans[-1].apps["f"].waiting_on


def test_reported_as_the_reference_reports_them(tmp_path):
    tgt = mixed()
    final, plans = converge(state(), tgt)
    board = StatusBoard(Store(tmp_path))
    for uuid, spec in tgt.apps.items():
        board.ensure_app(
            uuid, spec.id, spec.name, spec.release_uuid, spec.is_host, spec.runs_nothing
        )
        app_plan = plans[-1].apps[uuid]
        board.set_update_status(uuid, app_plan.release_uuid, app_plan.status, app_plan.reason)
        board.set_services(uuid, service_views(spec, final, app_plan, {}))
    report = apps_report(board.apps)
    # the host app: nothing (the reference reports no service of it, so no app)
    assert "host" not in report
    # the supervisor's own: its release done, its service Running, with no download progress
    assert report[SUP] == {
        "release_uuid": "rs",
        "releases": {
            "rs": {
                "update_status": "done",
                "update_lock": None,
                "update_reason": "not run: the supervisor's own service: the agent takes its place",
                "services": {"balena-supervisor": {"image": "balena/sv:17", "status": "Running"}},
            }
        },
    }
    # the fleet app: done, the extension not among its services
    fleet = report["fleet"]["releases"]["rf"]
    assert fleet["update_status"] == "done"
    assert fleet["services"] == {
        "web": {"image": "web:1", "status": "Running", "download_progress": 100}
    }
    assert report["plain"]["releases"]["rp"]["update_status"] == "done"
    # the single-app views (/v1/device, /v2/state/status) pick among apps with containers
    assert [v.app_uuid for v in board.container_apps()] == ["fleet", "plain"]
    sup = board.app(SUP)
    assert sup is not None and sup.services["balena-supervisor"].status is ServiceStatus.RUNNING
    # and after a restart the board still knows the host app is not to be reported
    again = StatusBoard(Store(tmp_path))
    host = again.app("host")
    assert "host" not in apps_report(again.apps) and host is not None and host.host_app
