"""The supervisor network: the bridge through which bridge-networked app containers labelled
`io.balena.features.supervisor-api` reach the local API, as on balenaOS.

balena's supervisor keeps an engine network `supervisor0` (bridge interface `supervisor0`,
subnet 10.114.104.0/25, gateway 10.114.104.1), connects every such service that is not on the
host network to it and tells it `BALENA_SUPERVISOR_HOST` = the gateway. The agent does the same:
it creates the network when missing, adopts one balena's supervisor left, recreates one whose
configuration is wrong (as the reference does) and says so in the log. The network carries no
`io.balena.supervised` label and is never taken for an app network (engine/docker.py reserves
its name). config.json `supervisorNetworkInterface`, `supervisorNetworkSubnet`,
`supervisorNetworkGateway` change the reference's values (tests run several engines on one
host, each with its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from agent.errors import ConfigError, EngineError, NotFound

log = structlog.get_logger("agent.engine.supnet")

DEFAULT_NAME = "supervisor0"
DEFAULT_SUBNET = "10.114.104.0/25"
DEFAULT_GATEWAY = "10.114.104.1"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
# a Linux interface name: at most 15 characters, no '/', ':' or blanks
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


@dataclass(frozen=True)
class SupervisorNetworkConfig:
    name: str = DEFAULT_NAME  # the engine network and its bridge interface
    subnet: str = DEFAULT_SUBNET
    gateway: str = DEFAULT_GATEWAY


def supervisor_network_config(raw: Mapping[str, Any]) -> SupervisorNetworkConfig:
    """The supervisor network's settings from config.json (the reference's when absent)."""
    name = raw.get("supervisorNetworkInterface") or DEFAULT_NAME
    subnet = raw.get("supervisorNetworkSubnet") or DEFAULT_SUBNET
    gateway = raw.get("supervisorNetworkGateway") or DEFAULT_GATEWAY
    if not isinstance(name, str) or not _IFNAME.fullmatch(name):
        raise ConfigError(
            f"'supervisorNetworkInterface' must be an interface name of at most 15 letters, "
            f"digits, '_', '.', '-': got {name!r}"
        )
    try:
        net = ipaddress.IPv4Network(str(subnet), strict=True)
    except ValueError as exc:
        raise ConfigError(f"'supervisorNetworkSubnet' must be an IPv4 subnet: {exc}") from exc
    try:
        gw = ipaddress.IPv4Address(str(gateway))
    except ValueError as exc:
        raise ConfigError(f"'supervisorNetworkGateway' must be an IPv4 address: {exc}") from exc
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise ConfigError(
            f"'supervisorNetworkGateway' {gw} must be a host address of "
            f"'supervisorNetworkSubnet' {net}"
        )
    return SupervisorNetworkConfig(name=name, subnet=str(net), gateway=str(gw))


def differences(config: SupervisorNetworkConfig, inspected: Mapping[str, Any]) -> list[str]:
    """What an existing network (the engine's inspect) has other than `config`, in the
    reference's terms (bridge name, first IPAM pool's subnet and gateway); [] when it fits."""
    options = inspected.get("Options") or {}
    pools = (inspected.get("IPAM") or {}).get("Config") or [{}]
    pool = pools[0] or {}
    found = {
        "bridge name": options.get(BRIDGE_NAME_OPTION),
        "subnet": pool.get("Subnet"),
        "gateway": pool.get("Gateway"),
    }
    wanted = {"bridge name": config.name, "subnet": config.subnet, "gateway": config.gateway}
    return [f"{k} {found[k]!r}, not {wanted[k]!r}" for k in wanted if found[k] != wanted[k]]


class NetworkEngine(Protocol):
    async def inspect_network(self, name: str) -> dict[str, Any] | None: ...

    async def create_bridge_network(
        self, name: str, subnet: str, gateway: str, bridge_name: str
    ) -> None: ...

    async def remove_network(self, name: str, reserved: bool = False) -> None: ...


class SupervisorNetwork:
    """Ensures the supervisor network once it can: at start-up, and again before a container
    that needs it is created when the engine could not be asked earlier."""

    def __init__(self, engine: NetworkEngine, config: SupervisorNetworkConfig) -> None:
        self.engine = engine
        self.config = config
        self.ready = False
        self._lock = asyncio.Lock()

    async def ensure(self) -> bool:
        """True once the network exists (created, adopted or recreated); False, with the
        reason in the log, while the engine cannot make it."""
        async with self._lock:
            if self.ready:
                return True
            try:
                await self._ensure()
            except EngineError as exc:
                log.warning(
                    "supervisor_network_unavailable", network=self.config.name, error=str(exc)
                )
                return False
            self.ready = True
            return True

    async def _ensure(self) -> None:
        cfg = self.config
        existing = await self.engine.inspect_network(cfg.name)
        if existing is not None:
            wrong = differences(cfg, existing)
            if not wrong:
                log.info("supervisor_network_adopted", network=cfg.name, gateway=cfg.gateway)
                return
            attached = sorted(
                str(c.get("Name") or cid) for cid, c in (existing.get("Containers") or {}).items()
            )
            log.warning(
                "supervisor_network_misconfigured",
                network=cfg.name,
                differences=wrong,
                containers=attached,
            )
            if attached:  # the engine will not remove it: keep it, containers may not reach us
                log.error(
                    "supervisor_network_kept",
                    network=cfg.name,
                    reason="containers are attached; it is left as it is and services on it "
                    f"are still told {cfg.gateway}",
                )
                return
            with contextlib.suppress(NotFound):
                await self.engine.remove_network(cfg.name, reserved=True)
        await self.engine.create_bridge_network(cfg.name, cfg.subnet, cfg.gateway, cfg.name)
        log.info(
            "supervisor_network_created",
            network=cfg.name,
            subnet=cfg.subnet,
            gateway=cfg.gateway,
            recreated=existing is not None,
        )
