"""Which services join the supervisor network and what they are told (engine/compose.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agent.engine.compose import ContainerSpec
from tests.unit.engine.targets import DEVICE, make

LABEL = {"io.balena.features.supervisor-api": "1"}
DEV = replace(
    DEVICE,
    api_port=48484,
    api_host="10.114.104.1",
    app_api_keys={5: "k5"},
    supervisor_network="supervisor0",
)


def _spec(labels: dict[str, str], **composition: Any) -> ContainerSpec:
    nets: dict[str, Any] | None = {"front": {}} if "networks" in composition else None
    return make(composition, labels=labels, device=DEV, networks=nets)


def _env(spec: ContainerSpec) -> dict[str, str]:
    return spec.create["environment"]


def test_a_labelled_service_on_its_app_network_also_joins_the_supervisor_network() -> None:
    spec = _spec(LABEL)
    assert spec.primary_network == "5_default"
    assert spec.extra_networks == ("supervisor0",)
    assert spec.endpoints["supervisor0"] == {"aliases": []}  # no service names on a shared net
    assert spec.endpoints["5_default"]["aliases"] == ["main"]
    assert _env(spec)["BALENA_SUPERVISOR_ADDRESS"] == "http://10.114.104.1:48484"
    assert _env(spec)["RESIN_SUPERVISOR_HOST"] == "10.114.104.1"


def test_after_its_own_networks() -> None:
    spec = _spec({"io.resin.features.supervisor-api": "true"}, networks=["front"])
    assert (spec.primary_network, spec.extra_networks) == ("5_front", ("supervisor0",))


def test_on_the_engine_bridge_too() -> None:
    spec = _spec(LABEL, network_mode="bridge")
    assert spec.host_config["network_mode"] == "bridge"
    assert spec.extra_networks == ("supervisor0",)


@pytest.mark.parametrize("mode", ["host", "none"])
def test_not_with_the_host_network_or_none(mode: str) -> None:
    spec = _spec(LABEL, network_mode=mode)
    assert spec.extra_networks == ()
    assert "supervisor0" not in spec.endpoints
    host = _env(spec)["BALENA_SUPERVISOR_HOST"]
    assert host == ("127.0.0.1" if mode == "host" else "10.114.104.1")


def test_unlabelled_or_turned_off_services_never_join() -> None:
    for labels in ({}, {"io.balena.features.supervisor-api": "0"}):
        spec = _spec(labels)
        assert spec.extra_networks == ()
        assert "BALENA_SUPERVISOR_HOST" not in _env(spec)


def test_without_a_supervisor_network_nothing_is_joined() -> None:
    spec = make({}, labels=LABEL, device=replace(DEV, supervisor_network=None))
    assert spec.extra_networks == ()
    assert _env(spec)["BALENA_SUPERVISOR_HOST"] == "10.114.104.1"


def test_host_networked_services_reach_the_api_where_it_listens() -> None:
    """config.json `listenAddress` 127.0.0.5: a host-networked service is told that address."""
    device = replace(DEV, loopback_api_host="127.0.0.5")
    spec = make({"network_mode": "host"}, labels=LABEL, device=device)
    env = _env(spec)
    assert env["BALENA_SUPERVISOR_ADDRESS"] == "http://127.0.0.5:48484"
    assert env["BALENA_SUPERVISOR_HOST"] == "127.0.0.5"
