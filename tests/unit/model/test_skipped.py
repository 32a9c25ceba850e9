"""Host apps, hostapp images and the supervisor's own service: accepted, never run."""

from agent.model import parse_target
from agent.model.skipped import SkipReason, is_supervisor, skip_events

DEVICE = "dev"
SUPERVISOR_APP = "900de4f3cbac4b9bbd232885a35e407b"  # balena's aarch64 supervisor app
HOSTAPP_LABELS = {"io.balena.image.class": "hostapp", "io.balena.image.store": "root"}


def doc(apps):
    return {DEVICE: {"name": "d", "config": {}, "apps": apps}}


def one_release(app_id, services, name=None, **extra):
    return {
        "id": app_id,
        "name": name or f"app{app_id}",
        "releases": {f"r{app_id}": {"id": app_id, "services": services}},
        **extra,
    }


def test_a_host_app_is_accepted_with_nothing_to_run_even_when_we_could_not_run_it():
    host = one_release(
        1,
        {
            "main": {"image": "balena/os:6", "labels": HOSTAPP_LABELS},
            # values the agent would reject in an app it runs: a host app is never checked
            "ext": {"image": "ext:1", "composition": {"network_mode": "service:nope"}},
        },
        name="balenaOS",
        is_host=True,
    )
    app = parse_target(doc({"h": host}), DEVICE).apps["h"]
    assert not app.rejected
    assert app.release is None and app.release_uuid == "r1"
    assert app.runs_nothing
    assert [(s.name, s.image, s.reason) for s in app.skipped] == [
        ("ext", "ext:1", SkipReason.HOST_APP),
        ("main", "balena/os:6", SkipReason.HOST_APP),
    ]
    assert "class hostapp, store root" in app.skipped[1].detail
    (event,) = skip_events(app)
    assert event["reason"] == "host_app" and event["whole_app"] is True
    assert event["services"] == ["ext", "main"]


def test_a_host_app_without_a_release_is_still_said_to_be_skipped():
    app = parse_target(doc({"h": {"id": 1, "name": "os", "is_host": True}}), DEVICE).apps["h"]
    assert app.runs_nothing and not app.rejected
    assert [e["reason"] for e in skip_events(app)] == ["host_app"]


def test_the_supervisor_app_by_the_references_rule():
    assert is_supervisor(SUPERVISOR_APP, "balena-supervisor")
    assert is_supervisor(SUPERVISOR_APP, "main") and is_supervisor(SUPERVISOR_APP, "core")
    assert not is_supervisor(SUPERVISOR_APP, "web")  # another service of that app runs
    assert not is_supervisor("0" * 32, "balena-supervisor")  # a user's app of that name runs
    tgt = parse_target(
        doc(
            {
                SUPERVISOR_APP: one_release(
                    2, {"balena-supervisor": {"image": "balena/aarch64-supervisor:v17"}}
                ),
                "u": one_release(3, {"balena-supervisor": {"image": "mine:1"}}),
            }
        ),
        DEVICE,
    )
    sup = tgt.apps[SUPERVISOR_APP]
    assert sup.runs_nothing and sup.release is not None and dict(sup.release.services) == {}
    assert [(s.name, s.reason) for s in sup.skipped] == [
        ("balena-supervisor", SkipReason.SUPERVISOR)
    ]
    user = tgt.apps["u"]
    assert user.release is not None and not user.runs_nothing
    assert list(user.release.services) == ["balena-supervisor"]


def test_a_hostapp_extension_in_a_fleet_app_is_left_out_and_the_rest_runs():
    services = {
        "ext": {"image": "ext:1", "labels": {"io.balena.image.class": "hostapp-extension"}},
        "legacy": {"image": "old:1", "labels": {"io.resin.image.class": "hostapp"}},
        "web": {"image": "web:1", "composition": {"depends_on": ["ext", "db"]}},
        "db": {"image": "db:1", "labels": {"io.balena.image.class": "service"}},
    }
    app = parse_target(doc({"f": one_release(4, services)}), DEVICE).apps["f"]
    assert not app.rejected and not app.runs_nothing and app.release is not None
    assert sorted(app.release.services) == ["db", "web"]
    # a dependency on a service that is not run counts as met (as the reference has it)
    assert dict(app.release.services["web"].depends_on) == {"db": "service_started"}
    assert {s.name: s.reason for s in app.skipped} == {
        "ext": SkipReason.HOSTAPP_IMAGE,
        "legacy": SkipReason.HOSTAPP_IMAGE,
    }
    (event,) = skip_events(app)
    assert event["whole_app"] is False and event["services"] == ["ext", "legacy"]
    assert "hostapp-extension" in event["detail"]


def test_sharing_the_network_of_a_service_that_is_not_run_rejects_only_that_app():
    services = {
        "ext": {"image": "ext:1", "labels": {"io.balena.image.class": "hostapp-extension"}},
        "web": {"image": "web:1", "composition": {"network_mode": "service:ext"}},
    }
    tgt = parse_target(
        doc({"f": one_release(4, services), "g": one_release(5, {"m": {"image": "m:1"}})}),
        DEVICE,
    )
    assert "service:ext, a service the agent does not run" in str(tgt.apps["f"].rejection)
    assert not tgt.apps["g"].rejected


def test_plain_apps_have_nothing_skipped():
    app = parse_target(doc({"a": one_release(1, {"m": {"image": "m:1"}})}), DEVICE).apps["a"]
    assert app.skipped == () and not app.runs_nothing and skip_events(app) == []
