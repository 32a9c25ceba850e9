"""Values a target may carry that the container spec could not be built from: each is either
made to work (port ranges) or rejects its app at parse time, with a reason naming the service
and the key, while the other apps of the target stay valid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from agent.model import AppSpec, ReleaseSpec, parse_target
from agent.model.compose_values import PortRange, parse_port

DEV = "dev1"


def svc(image: str = "reg/app:1", **composition: Any) -> dict[str, Any]:
    return {"id": 1, "image_id": 2, "image": image, "composition": composition}


def parse(
    services: dict[str, Any], app_id: Any = 7, release_id: Any = 11, volumes: Any = None
) -> Mapping[str, AppSpec]:
    """Parse a target with the app under test ("bad") beside a valid one ("good")."""
    bad = {
        "id": app_id,
        "name": "myapp",
        "releases": {"r1": {"id": release_id, "services": services, "volumes": volumes or {}}},
    }
    good = {"id": 8, "name": "other", "releases": {"r2": {"id": 12, "services": {"x": svc()}}}}
    apps = parse_target({DEV: {"apps": {"bad": bad, "good": good}}}, DEV).apps
    assert apps["good"].rejection is None, apps["good"].rejection
    return apps


def rejection(services: dict[str, Any], **kw: Any) -> str:
    apps = parse(services, **kw)
    reason = apps["bad"].rejection
    assert reason is not None, "accepted"
    assert apps["bad"].release_uuid == "r1"
    return reason


def accepted(services: dict[str, Any], **kw: Any) -> ReleaseSpec:
    app = parse(services, **kw)["bad"]
    assert app.rejection is None, app.rejection
    assert app.release is not None
    return app.release


@pytest.mark.parametrize(
    "port",
    [
        "1.5",
        ":",
        "",
        "8000-8002:8000-8001",  # ranges of different lengths
        "8000-8002:80",
        "8002-8000",
        "0",
        "70000",
        "8080:70000",
        "99999999999999999999:80",
        "999.1.1.1:80:80",
        "1:2:3",
        "80/icmp",
        "²",
        " 80",
        "-1:80",
        -1,
        0,
        True,
        80.0,
        None,
        ["80"],
    ],
)
def test_bad_ports_reject_the_app_naming_service_and_key(port):
    reason = rejection({"web": svc(ports=[port])})
    assert "service web" in reason and "ports" in reason, reason


@pytest.mark.parametrize(
    ("port", "parsed"),
    [
        (80, PortRange(80, 1, host_port=80)),
        ("8000-8002:8000-8002", PortRange(8000, 3, host_port=8000)),
        ("9000-9002:8000-8002/udp", PortRange(8000, 3, "udp", host_port=9000)),
        ("127.0.0.1::53/udp", PortRange(53, 1, "udp", host_ip="127.0.0.1")),
        ("[::1]:8080:80", PortRange(80, 1, host_ip="::1", host_port=8080)),
        ("0:80", PortRange(80, 1, host_port=0)),
    ],
)
def test_valid_ports_including_ranges_are_accepted(port, parsed):
    assert parse_port(port) == parsed
    comp = accepted({"web": svc(ports=[port])}).services["web"].composition
    assert comp.ports == (str(port),)


@pytest.mark.parametrize(
    "duration",
    ["inf", "nan", "1e999", "-1", "-1s", "1e3", -1, -0.5, float("inf"), float("nan"), 10**400,
     "9" * 400, "1" + "0" * 20 + "h", "soon", "", "1x", True, [], {}],
)  # fmt: skip
@pytest.mark.parametrize("key", ["stop_grace_period", "healthcheck"])
def test_durations_must_be_finite_and_non_negative(duration, key):
    composition: dict[str, Any] = {"stop_grace_period": duration}
    if key == "healthcheck":
        composition = {"healthcheck": {"test": "true", "interval": duration}}
    reason = rejection({"web": svc(**composition)})
    assert "service web" in reason and key in reason, reason


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("0", 0.0), (0, 0.0), ("1m30s", 90.0), ("1.5h", 5400.0), (2.5, 2.5), ("250ms", 0.25)],
)
def test_valid_stop_grace_periods(duration, seconds):
    comp = accepted({"web": svc(stop_grace_period=duration)}).services["web"].composition
    assert comp.stop_grace_period_s == seconds


def test_healthcheck_bounds():
    for hc, key in [
        ({"test": "true", "interval": "500us"}, "healthcheck.interval"),
        ({"test": "true", "retries": -1}, "healthcheck.retries"),
        ({"test": "true", "retries": 2**63}, "healthcheck.retries"),
        ({"test": ["true"]}, "healthcheck.test"),
        ({"test": ["CMD"]}, "healthcheck.test"),
    ]:
        reason = rejection({"web": svc(healthcheck=hc)})
        assert "service web" in reason and key in reason, reason


@pytest.mark.parametrize("name", ["web\n", "web\nx", "-web", "we b", "wéb", "", "web/1"])
def test_service_names_match_whole(name):
    reason = rejection({name: svc()})
    assert f"service {name!r}" in reason and "invalid service name" in reason, reason


@pytest.mark.parametrize("bad_id", [0, -1, True, "7", 7.0, None])
def test_app_ids_must_be_positive_integers(bad_id):
    apps = parse({"web": svc()}, app_id=bad_id)
    assert apps["bad"].rejection is not None and "'id'" in apps["bad"].rejection
    assert apps["bad"].id == 0  # never a negative or boolean id downstream


@pytest.mark.parametrize("bad_id", [0, -1, True, "11"])
def test_release_ids_must_be_positive_integers(bad_id):
    assert "'id'" in rejection({"web": svc()}, release_id=bad_id)


@pytest.mark.parametrize("key", ["id", "image_id"])
@pytest.mark.parametrize("bad_id", [0, -3, False, "1"])
def test_service_and_image_ids_must_be_positive_integers(key, bad_id):
    reason = rejection({"web": {**svc(), key: bad_id}})
    assert "service web" in reason and f"'{key}'" in reason, reason


@pytest.mark.parametrize("restart", ["on-failure:²", "always:5", "on-failure:", "", "x", 5])
def test_restart_policies_are_checked_whole(restart):
    reason = rejection({"web": svc(restart=restart)})
    assert "service web" in reason and "restart" in reason, reason


def test_host_bind_mounts_are_left_out_and_listed_as_ignored():
    binds = [
        "/:/host",
        "/var/run/docker.sock:/var/run/docker.sock",
        "./src:/src:ro",
        "~/x:/x",
        {"type": "bind", "source": "/", "target": "/host"},
    ]
    app = accepted({"web": svc(volumes=[*binds, "data:/data", "/scratch"])}, volumes={"data": {}})
    comp = app.services["web"].composition
    assert comp.volumes == ("data:/data", "/scratch")
    assert comp.ignored_keys == (
        "volumes: /:/host",
        "volumes: /var/run/docker.sock:/var/run/docker.sock",
        "volumes: ./src:/src:ro",
        "volumes: ~/x:/x",
        "volumes: {'type': 'bind', 'source': '/', 'target': '/host'}",
    )
    # ignored mounts don't shape the container: the same config hash as without them
    plain = accepted({"web": svc(volumes=["data:/data", "/scratch"])}, volumes={"data": {}})
    assert plain.services["web"].config_hash() == app.services["web"].config_hash()


@pytest.mark.parametrize(
    ("volume", "fragment"),
    [
        ("data", "absolute"),
        ("data:data", "absolute"),
        (":/data", "no volume name"),
        ("data:/data:rw:extra", "source:target"),
        ("data:/data:bogus", "mode"),
        ("data:/tmp/balena", "update-lock"),
        ("data:/tmp/resin/", "update-lock"),
        ({"type": "volume", "source": "/etc", "target": "/data"}, "volume name"),
        ({"type": "volume", "target": "/data", "read_only": True}, "named volume"),
        ({"type": "volume", "source": "data", "target": "data"}, "absolute"),
        ({"type": "volume", "source": "data", "target": "/d", "read_only": "yes"}, "read_only"),
        ({"type": "tmpfs", "target": "/t", "tmpfs": {"size": -1}}, "tmpfs.size"),
        ({"type": "npipe", "target": "/p"}, "type must be"),
        ({"source": "data", "target": "/p"}, "type must be"),
        (5, "expected a string"),
    ],
)
def test_bad_volume_entries_reject_the_app(volume, fragment):
    reason = rejection({"web": svc(volumes=[volume])}, volumes={"data": {}})
    assert "service web" in reason and "volumes" in reason and fragment in reason, reason


def test_two_mounts_on_one_path_reject_the_app():
    reason = rejection(
        {"web": svc(volumes=["data:/data"], tmpfs=["/data:size=1m"])}, volumes={"data": {}}
    )
    assert "service web: tmpfs: /data is already used by volumes" in reason
    reason = rejection({"web": svc(tmpfs="run")})
    assert "service web: tmpfs" in reason and "absolute" in reason


def test_volume_and_release_names_fit_engine_names():
    assert "volume 'a/b'" in rejection({"web": svc()}, volumes={"a/b": {}})
    apps = parse_target(
        {DEV: {"apps": {"a": {"id": 1, "releases": {"r/1": {"id": 1, "services": {}}}}}}}, DEV
    ).apps
    assert "invalid release uuid" in (apps["a"].rejection or "")


def test_working_dir_must_be_absolute():
    reason = rejection({"web": svc(working_dir="app")})
    assert "service web: working_dir" in reason


def test_ignored_keys_leave_the_config_hash_as_it_was():
    """Containers made by an earlier agent keep their hash (no restart on upgrade), and keys
    the agent ignores never change it."""
    plain = accepted({"web": svc()}).services["web"]
    custom: dict[str, Any] = {"x-custom": {"a": 1}}
    junk = accepted({"web": svc(junk=1, **custom)}).services["web"]
    assert junk.composition.ignored_keys == ("junk", "x-custom")
    assert plain.config_hash() == junk.config_hash() == "5e125cd10f475d6b"  # as before


def test_long_volume_syntax_in_its_short_form():
    comp = (
        accepted(
            {
                "web": svc(
                    volumes=[
                        {"type": "volume", "source": "data", "target": "/data", "read_only": True},
                        {
                            "type": "volume",
                            "source": "data",
                            "target": "/d2",
                            "volume": {"nocopy": True},
                        },
                        {"type": "volume", "target": "/anon"},
                        {"type": "tmpfs", "target": "/scratch", "tmpfs": {"size": 1048576}},
                        {"type": "bind", "source": "/var/run/docker.sock", "target": "/s"},
                    ]
                )
            },
            volumes={"data": {}},
        )
        .services["web"]
        .composition
    )
    assert comp.volumes == ("data:/data:ro", "data:/d2:nocopy", "/anon")
    assert comp.tmpfs == ("/scratch:size=1048576",)
    assert comp.ignored_keys == (
        "volumes: {'type': 'bind', 'source': '/var/run/docker.sock', 'target': '/s'}",
    )


def test_restart_policies_read_as_the_reference_does():
    for given, stored in [
        (" Always ", "always"),
        ("ON-FAILURE:3", "on-failure:3"),
        (None, "always"),
    ]:
        comp = accepted({"web": svc(restart=given)}).services["web"].composition
        assert comp.restart == stored


def test_depends_on_conditions_of_any_shape():
    for condition in [[], {}, 5, None, "x"]:
        reason = rejection({"web": svc(depends_on={"db": {"condition": condition}}), "db": svc()})
        assert "service web: depends_on db: bad condition" in reason


def test_a_long_depends_on_chain_or_cycle_is_no_recursion():
    n = 5000
    chain = {f"s{i}": svc(depends_on=[f"s{i + 1}"] if i + 1 < n else []) for i in range(n)}
    assert len(accepted(chain).services) == n
    chain[f"s{n - 1}"] = svc(depends_on=["s0"])
    reason = rejection(chain)
    assert "depends_on cycle s0 -> s1 -> s2 -> s3 -> s4 -> ... (4993 more) -> " in reason
    assert reason.endswith("-> s4998 -> s4999 -> s0") and len(reason) < 200, reason


def test_long_texts_are_refused_at_once():
    cases: list[tuple[dict[str, Any], str]] = [
        ({"stop_grace_period": "1" * 20000 + "x"}, "stop_grace_period"),
        ({"ports": ["1" * 20000 + "x"]}, "ports"),
    ]
    for composition, key in cases:
        reason = rejection({"web": svc(**composition)})
        assert "service web" in reason and key in reason and "too long" in reason
        assert len(reason) < 200
