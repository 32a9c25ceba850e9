import pytest

from agent.errors import TargetStateError
from agent.model import parse_target
from agent.model.target import parse_duration

DEV = "dev1"


def doc(apps=None, config=None):
    return {DEV: {"name": "dev", "config": config or {}, "apps": apps or {}}}


def app(services, volumes=None, networks=None, release="r1", app_id=7):
    return {
        "id": app_id,
        "name": "myapp",
        "class": "fleet",
        "releases": {
            release: {
                "id": 11,
                "services": services,
                "volumes": volumes or {},
                "networks": networks or {},
            }
        },
    }


def svc(image="reg/app@sha256:aa", **composition):
    return {"id": 1, "image_id": 2, "image": image, "composition": composition}


def test_parses_full_service_composition():
    target = parse_target(
        doc(
            {
                "a1": app(
                    {
                        "main": svc(
                            command="echo hi",
                            ports=["8080:80", 53, "127.0.0.1:9000:9000/udp"],
                            volumes=["data:/data", "/host:/host:ro"],
                            restart="on-failure:3",
                            privileged=True,
                            cap_add=["SYS_ADMIN", "NET_ADMIN"],
                            devices=["/dev/i2c-1:/dev/i2c-1"],
                            depends_on={"db": {"condition": "service_healthy"}},
                            healthcheck={"test": ["CMD", "true"], "interval": "1m30s"},
                            init=True,
                        ),
                        "db": svc(image="reg/db:1"),
                    },
                    volumes={"data": {}},
                )
            },
            config={"BALENA_SUPERVISOR_POLL_INTERVAL": 60000},
        ),
        DEV,
    )
    assert target.config == {"BALENA_SUPERVISOR_POLL_INTERVAL": "60000"}
    a = target.apps["a1"]
    assert a.rejection is None and a.release is not None
    main = a.release.services["main"].composition
    assert main.command == ("/bin/sh", "-c", "echo hi")
    assert main.ports == ("8080:80", "53", "127.0.0.1:9000:9000/udp")
    assert main.named_volumes() == ("data",)
    assert main.cap_add == ("NET_ADMIN", "SYS_ADMIN")
    assert main.depends_on == (("db", "service_healthy"),)
    assert main.healthcheck is not None and main.healthcheck.interval_s == 90.0
    assert main.restart == "on-failure:3"


@pytest.mark.parametrize(
    "body",
    [[], "text", None, {"other-device": {}}, {DEV: []}, {DEV: {"apps": []}}],
)
def test_structurally_broken_documents_raise(body):
    with pytest.raises(TargetStateError):
        parse_target(body, DEV)


@pytest.mark.parametrize(
    ("services", "volumes", "fragment"),
    [
        ({"main": {"id": 1}}, None, "image"),
        ({"main": svc(volumes=["data:/data"])}, None, "undeclared volume data"),
        ({"main": svc(depends_on=["ghost"])}, None, "unknown service ghost"),
        ({"a": svc(depends_on=["b"]), "b": svc(depends_on=["a"])}, None, "cycle"),
        ({"main": svc(restart="sometimes")}, None, "restart policy"),
        ({"main": svc(ports=["http"])}, None, "port"),
        ({"main": {**svc(), "running": "yes"}}, None, "running"),
        ({"bad name!": svc()}, None, "invalid service name"),
    ],
)
def test_an_invalid_app_is_rejected_alone(services, volumes, fragment):
    target = parse_target(
        doc({"bad": app(services, volumes), "good": app({"main": svc()}, app_id=8)}), DEV
    )
    assert target.apps["bad"].rejection is not None
    assert fragment in target.apps["bad"].rejection
    assert target.apps["bad"].release_uuid == "r1"
    assert target.apps["good"].rejection is None


def test_two_releases_for_one_app_are_rejected():
    raw = app({"main": svc()})
    raw["releases"]["r2"] = raw["releases"]["r1"]
    assert "one release" in (parse_target(doc({"a": raw}), DEV).apps["a"].rejection or "")


def test_config_hash_ignores_release_but_not_config():
    one = parse_target(doc({"a": app({"main": svc()}, release="r1")}), DEV)
    two = parse_target(doc({"a": app({"main": svc()}, release="r2")}), DEV)
    three = parse_target(doc({"a": app({"main": svc(privileged=True)})}), DEV)
    h1, h2, h3 = (
        release.services["main"].config_hash()
        for target in (one, two, three)
        if (release := target.apps["a"].release) is not None
    )
    assert h1 == h2 and h1 != h3


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("1m30s", 90), ("500ms", 0.5), (3, 3), ("2h", 7200)]
)
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_bad_duration():
    with pytest.raises(TargetStateError):
        parse_duration("soon", "x")
