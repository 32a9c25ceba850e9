"""The supervisor network's settings for an agent on a test engine.

Every private engine of the test bed shares this host's network namespace, and the supervisor
network's bridge is an interface of the host: two engines using balena's `supervisor0` /
10.114.104.0/25 at once would fight over one interface name and one subnet. So each engine gets
its own bridge name and a /28 of 10.114.0.0/16 that no route of this host covers yet (never
10.114.104.0/25 itself, which a real balenaOS would use). All traffic on it stays on this host:
the only peers are the engine's containers and the host's own gateway address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess

_RANGE = ipaddress.IPv4Network("10.114.0.0/16")
_BALENA = ipaddress.IPv4Network("10.114.104.0/25")
_CHOSEN: dict[str, dict[str, str]] = {}  # docker host -> config.json keys


def _routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout
    nets = []
    for line in out.splitlines():
        word = line.split(" ", 1)[0]
        if word in ("default", "local", "broadcast", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1] if word != "default" else ""
        try:
            nets.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    return [n for n in nets if n.prefixlen > 0]


def supervisor_network_for(docker_host: str) -> dict[str, str]:
    """config.json keys (`supervisorNetworkInterface`, `...Subnet`, `...Gateway`) for agents
    driving `docker_host`: the same for every agent of that engine in this process."""
    if docker_host not in _CHOSEN:
        digest = hashlib.sha256(docker_host.encode()).digest()
        chosen = [ipaddress.IPv4Network(c["supervisorNetworkSubnet"]) for c in _CHOSEN.values()]
        taken = [*_routes(), _BALENA, *chosen]
        subnets = list(_RANGE.subnets(new_prefix=28))
        start = int.from_bytes(digest[:4], "big") % len(subnets)
        for i in range(len(subnets)):
            net = subnets[(start + i) % len(subnets)]
            if not any(net.overlaps(t) for t in taken):
                break
        else:  # pragma: no cover - 4096 /28s all routed
            raise RuntimeError("no free /28 in 10.114.0.0/16 for a supervisor network")
        _CHOSEN[docker_host] = {
            "supervisorNetworkInterface": f"sv{digest[4:7].hex()}",  # 8 chars (limit 15)
            "supervisorNetworkSubnet": str(net),
            "supervisorNetworkGateway": str(net.network_address + 1),
        }
    return dict(_CHOSEN[docker_host])


def remove_bridge(docker_host: str) -> None:
    """Delete the bridge interface this process chose for `docker_host` (its engine is gone;
    dockerd leaves a network's bridge behind when it stops)."""
    chosen = _CHOSEN.get(docker_host)
    if chosen is None:
        return
    subprocess.run(
        ["ip", "link", "delete", chosen["supervisorNetworkInterface"]],
        capture_output=True,
        check=False,
    )
