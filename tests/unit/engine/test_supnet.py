"""The supervisor network's settings and how the agent ensures it (engine/supnet.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.engine.supnet import (
    SupervisorNetwork,
    SupervisorNetworkConfig,
    differences,
    supervisor_network_config,
)
from agent.errors import ConfigError, EngineUnavailable, NotFound


def test_the_reference_values_by_default() -> None:
    cfg = supervisor_network_config({})
    assert cfg == SupervisorNetworkConfig("supervisor0", "10.114.104.0/25", "10.114.104.1")


def test_config_keys_change_them() -> None:
    cfg = supervisor_network_config(
        {
            "supervisorNetworkInterface": "sv1",
            "supervisorNetworkSubnet": "10.114.7.16/28",
            "supervisorNetworkGateway": "10.114.7.17",
        }
    )
    assert cfg == SupervisorNetworkConfig("sv1", "10.114.7.16/28", "10.114.7.17")


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"supervisorNetworkInterface": "a-name-far-too-long"}, "supervisorNetworkInterface"),
        ({"supervisorNetworkInterface": "bad/name"}, "supervisorNetworkInterface"),
        ({"supervisorNetworkSubnet": "10.114.104.1/25"}, "supervisorNetworkSubnet"),  # host bits
        ({"supervisorNetworkSubnet": "fd00::/64"}, "supervisorNetworkSubnet"),
        ({"supervisorNetworkGateway": "10.114.105.1"}, "supervisorNetworkGateway"),  # outside
        ({"supervisorNetworkGateway": "10.114.104.0"}, "supervisorNetworkGateway"),  # network
        ({"supervisorNetworkGateway": "not-an-ip"}, "supervisorNetworkGateway"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_its_key(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        supervisor_network_config(raw)


@settings(deadline=None)  # the machine is shared: no timing in a unit test
@given(
    st.dictionaries(
        st.sampled_from(
            ["supervisorNetworkInterface", "supervisorNetworkSubnet", "supervisorNetworkGateway"]
        ),
        st.one_of(st.text(max_size=20), st.integers(), st.none()),
    )
)
def test_any_value_gives_a_config_or_a_config_error(raw: dict[str, Any]) -> None:
    """Never another exception; what is accepted is usable: the gateway a host of the
    subnet, the name a valid interface name."""
    try:
        cfg = supervisor_network_config(raw)
    except ConfigError:
        return
    net = ipaddress.IPv4Network(cfg.subnet)
    gateway = ipaddress.IPv4Address(cfg.gateway)
    assert gateway in net and gateway not in (net.network_address, net.broadcast_address)
    assert (
        0 < len(cfg.name) <= 15 and "/" not in cfg.name and not any(c.isspace() for c in cfg.name)
    )


def _inspected(
    bridge: str | None = "supervisor0",
    subnet: str = "10.114.104.0/25",
    gateway: str = "10.114.104.1",
    containers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "Name": "supervisor0",
        "Id": "n1",
        "Options": {"com.docker.network.bridge.name": bridge} if bridge else {},
        "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet, "Gateway": gateway}]},
        "Containers": containers or {},
    }


def test_differences_name_what_is_wrong() -> None:
    cfg = SupervisorNetworkConfig()
    assert differences(cfg, _inspected()) == []
    assert differences(cfg, _inspected(bridge=None)) == ["bridge name None, not 'supervisor0'"]
    wrong = differences(cfg, _inspected(subnet="10.9.0.0/24", gateway="10.9.0.1"))
    assert wrong == [
        "subnet '10.9.0.0/24', not '10.114.104.0/25'",
        "gateway '10.9.0.1', not '10.114.104.1'",
    ]
    assert len(differences(cfg, {"Name": "supervisor0"})) == 3  # no IPAM at all


class FakeEngine:
    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.network = existing
        self.calls: list[str] = []
        self.down = False

    async def inspect_network(self, name: str) -> dict[str, Any] | None:
        self.calls.append(f"inspect {name}")
        if self.down:
            raise EngineUnavailable("engine not reachable")
        return self.network

    async def create_bridge_network(
        self, name: str, subnet: str, gateway: str, bridge_name: str
    ) -> None:
        self.calls.append(f"create {name} {subnet} {gateway} {bridge_name}")
        self.network = _inspected(bridge_name, subnet, gateway)

    async def remove_network(self, name: str, reserved: bool = False) -> None:
        assert reserved
        self.calls.append(f"remove {name}")
        if self.network is None:
            raise NotFound(name)
        self.network = None


async def _ensure(engine: FakeEngine) -> tuple[bool, SupervisorNetwork]:
    net = SupervisorNetwork(engine, SupervisorNetworkConfig())
    return (await net.ensure()), net


async def test_missing_it_is_created() -> None:
    engine = FakeEngine()
    ok, net = await _ensure(engine)
    assert ok and net.ready
    assert engine.calls == [
        "inspect supervisor0",
        "create supervisor0 10.114.104.0/25 10.114.104.1 supervisor0",
    ]


async def test_one_balena_made_is_adopted_untouched() -> None:
    engine = FakeEngine(_inspected())
    ok, _ = await _ensure(engine)
    assert ok and engine.calls == ["inspect supervisor0"]


async def test_a_wrong_one_is_recreated_as_the_reference_does() -> None:
    engine = FakeEngine(_inspected(bridge="br-1234"))
    ok, _ = await _ensure(engine)
    assert ok
    assert engine.calls[1:] == [
        "remove supervisor0",
        "create supervisor0 10.114.104.0/25 10.114.104.1 supervisor0",
    ]


async def test_a_wrong_one_in_use_is_kept() -> None:
    engine = FakeEngine(_inspected(gateway="10.114.104.2", containers={"c1": {"Name": "x"}}))
    ok, _ = await _ensure(engine)
    assert ok and engine.calls == ["inspect supervisor0"]


async def test_an_unreachable_engine_is_tried_again_later() -> None:
    engine = FakeEngine()
    engine.down = True
    net = SupervisorNetwork(engine, SupervisorNetworkConfig())

    async def twice() -> tuple[bool, bool, bool]:
        first = await net.ensure()
        engine.down = False
        second = await net.ensure()
        third = await net.ensure()  # ready: no more engine calls
        return first, second, third

    assert (await twice()) == (False, True, True)
    assert engine.calls.count("inspect supervisor0") == 2
