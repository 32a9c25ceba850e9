"""Service contracts and `io.balena.features.optional`, with the reference's own cases
(test/unit/lib/contracts.spec.ts): unmet requirements reject the app, unless the service is
optional, then only that service is left out."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.model import parse_target
from agent.model.contracts import (
    DeviceContract,
    apply_contracts,
    kernel_facts,
    parse_contract,
    requirements_met,
    satisfies,
)

OS_VERSION = "5.5.5+rev3"
DEVICE = DeviceContract(
    supervisor_version="14.2.0",
    device_type="intel-nuc",
    device_arch="amd64",
    os_slug="balena-os",
    os_version=OS_VERSION,
    l4t_version="32.2",
)


def met(*requires) -> bool:
    return requirements_met(parse_contract({"requires": list(requires)}), DEVICE)


@pytest.mark.parametrize(
    "version",
    [
        f">={OS_VERSION}",
        f"<={OS_VERSION}",
        "5",
        "5.*",
        "5.5",
        "5.5.*",
        "5.5.5",
        "5.5.5+rev*",
        "5.5.5+rev420",
        ">5.4.5",
        "<5.6.5",
    ],
)
def test_os_versions_the_reference_fulfils(version):
    assert met({"type": "sw.os", "version": version, "slug": "balena-os"})


@pytest.mark.parametrize(
    "version", ["<=2.0.0", ">=420.0.0", f">{OS_VERSION}", f"<{OS_VERSION}", "6.*", "5.5.6"]
)
def test_os_versions_the_reference_refuses(version):
    assert not met({"type": "sw.os", "version": version, "slug": "balena-os"})


def test_requirements_as_the_reference_resolves_them():
    assert met({"type": "sw.supervisor", "version": ">13.0.0"}, {"type": "hw.device-type"})
    assert met(
        {"type": "sw.supervisor", "version": "<15.0.0"}, {"type": "arch.sw", "slug": "amd64"}
    )
    assert met(
        {"type": "sw.l4t", "version": "32.2"}, {"type": "hw.device-type", "slug": "intel-nuc"}
    )
    assert not met({"type": "sw.supervisor", "version": ">=15.0.0"})
    assert not met({"type": "hw.device-type", "slug": "raspberrypi3"})
    assert not met({"type": "arch.sw", "slug": "armv7hf"})
    assert not met({"type": "sw.l4t", "version": "28.2"})
    assert not met({"type": "sw.os", "slug": "ubuntu"})
    assert met(
        {"or": [{"type": "sw.os", "slug": "ubuntu"}, {"type": "sw.os", "slug": "balena-os"}]}
    )
    assert not met(
        {"or": [{"type": "arch.sw", "slug": "rpi"}, {"type": "arch.sw", "slug": "i386"}]}
    )


def test_a_requirement_the_device_has_no_fact_for_is_not_checked():
    bare = DeviceContract("14.2.0", "intel-nuc", "amd64")  # no l4t, os or kernel known
    assert requirements_met(
        parse_contract({"requires": [{"type": "sw.l4t", "version": "32"}]}), bare
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"requires": [{"type": "sw.unsupported"}]}, "sw.unsupported is not a valid"),
        ({"requires": [{"or": [{"type": "sw.unsupported"}, {"type": "sw.os"}]}]}, "not a valid"),
        ({"type": 1234}, "type must be a string"),
        ({"slug": True}, "slug must be a string"),
        ({"requires": [{"version": ">3.0.0"}]}, "string type"),
        ({"requires": "x"}, "requires must be a list"),
        ("contract", "must be an object"),
    ],
)
def test_malformed_contracts(raw, error):
    with pytest.raises(ValueError, match=error):
        parse_contract(raw)


def test_extra_fields_are_ignored():
    contract = {
        "slug": "c",
        "version": "3.0.0",
        "name": "x",
        "requires": [{"type": "sw.os", "data": {}}],
    }
    assert requirements_met(parse_contract(contract), DEVICE)


@pytest.mark.parametrize(
    ("version", "range_", "expected"),
    [
        ("1.2.3", "^1.2", True),
        ("2.0.0", "^1.2", False),
        ("0.2.5", "^0.2.3", True),
        ("0.3.0", "^0.2.3", False),
        ("1.2.9", "~1.2.3", True),
        ("1.3.0", "~1.2.3", False),
        ("1.5.0", "1.2.3 - 2", True),
        ("3.0.0", "1.2.3 - 2", False),
        ("1.0.0", ">= 1.0.0 < 2", True),
        ("2.0.0-rc1", "<2.0.0", False),
        ("2.0.0-rc1", ">=2.0.0-alpha", True),
        ("2.0.0-alpha.10", ">2.0.0-alpha.9", True),
        ("3.1.0", "<2 || >=3", True),
        ("1.0.0", "*", True),
        ("1.0.0", "not a range", False),
        ("junk", "*", False),
    ],
)
def test_semver_ranges(version, range_, expected):
    assert satisfies(version, range_) is expected


@given(st.text(max_size=30), st.text(max_size=30))
def test_any_text_never_raises(version, range_):
    satisfies(version, range_)


def test_kernel_facts_as_the_reference_parses_uname():
    assert kernel_facts("4.9.140-l4t-r32.2+g3dcbed5", "Linux") == {
        "kernel_version": "4.9.140",
        "kernel_slug": "linux",
        "l4t_version": "32.2.0",
    }
    assert kernel_facts("6.1.0-13-amd64", "Linux")["l4t_version"] is None


def document(services):
    return {
        "dev": {
            "name": "d",
            "apps": {
                "a1": {
                    "id": 1,
                    "name": "app",
                    "releases": {"r1": {"id": 1, "services": services}},
                },
                "a2": {
                    "id": 2,
                    "name": "other",
                    "releases": {"r2": {"id": 2, "services": {"s": {"image": "i"}}}},
                },
            },
        }
    }


def svc(requires=None, optional=None, spelling="balena"):
    out: dict[str, Any] = {"image": "img"}
    if requires is not None:
        out["contract"] = {"type": "sw.container", "requires": requires}
    if optional is not None:
        out["labels"] = {f"io.{spelling}.features.optional": optional}
    return out


def check(services):
    body = document(services)
    return apply_contracts(parse_target(body, "dev"), body, DEVICE)


UNMET = [{"type": "hw.device-type", "slug": "raspberrypi3"}]
MET = [{"type": "arch.sw", "slug": "amd64"}]


def test_unmet_requirements_reject_the_app_alone():
    got = check({"main": svc(UNMET), "web": svc(MET)})
    assert got.target.apps["a1"].rejection == ("app app: services with unmet requirements: main")
    assert got.target.apps["a1"].release is None
    assert got.target.apps["a2"].rejection is None
    assert got.not_run == {}


@pytest.mark.parametrize("spelling", ["balena", "resin"])
def test_an_optional_service_with_unmet_requirements_is_not_run(spelling):
    got = check({"main": svc(UNMET, "1", spelling), "web": svc(MET, "1"), "db": svc()})
    app = got.target.apps["a1"]
    assert app.rejection is None
    assert app.release is not None and sorted(app.release.services) == ["db", "web"]
    assert got.not_run == {"app": ("main",)}


def test_optional_false_still_rejects():
    got = check({"main": svc(UNMET, "false")})
    assert got.target.apps["a1"].rejection is not None


def test_a_malformed_contract_rejects_its_app():
    got = check({"main": svc([{"type": "sw.blah"}])})
    assert got.target.apps["a1"].rejection == (
        "app app: service main: contract: sw.blah is not a valid contract requirement type"
    )


def test_no_contracts_no_change():
    body = document({"main": svc(), "web": svc(MET)})
    target = parse_target(body, "dev")
    assert apply_contracts(target, body, DEVICE).target == target


def test_the_claimed_supervisor_version_meets_what_balena_releases_require():
    """The agent claims the reference's version for `sw.supervisor`: a release written for
    balena's supervisor 14 runs, one that needs a supervisor newer than that claim does not."""
    from dataclasses import replace

    from agent import SUPERVISOR_COMPAT_VERSION, __version__

    device = replace(DEVICE, supervisor_version=SUPERVISOR_COMPAT_VERSION)

    def meets(version: str) -> bool:
        contract = parse_contract({"requires": [{"type": "sw.supervisor", "version": version}]})
        return requirements_met(contract, device)

    assert meets(">=14") and meets(">=14.0.0") and meets(">=9.7.0") and meets("^19.0.0")
    assert not meets(">=20") and not meets("<19")
    # the agent's own version would refuse them: the claim is what makes these releases run
    own = replace(DEVICE, supervisor_version=__version__)
    contract = parse_contract({"requires": [{"type": "sw.supervisor", "version": ">=14"}]})
    assert not requirements_met(contract, own)
