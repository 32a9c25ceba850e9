"""The compose keys that tune the container's host config (resources, kernel, DNS) and its
networks (network_mode, per-network endpoints), read into `Composition` fields; the value
parsers are in `compose_options.py`. A value the engine would refuse raises
`TargetStateError` naming service and key: it rejects the app alone."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from agent.errors import TargetStateError
from agent.model import compose_options as opt
from agent.model.checks import _as_list, _bool, _list, _str, _strs
from agent.model.compose_options import Endpoint


def snake_case_keys(raw: dict[str, Any], known: Collection[str]) -> dict[str, Any]:
    """The reference camel-cases every key, so both `mem_limit` and `memLimit` work there."""
    out = dict(raw)
    for key in raw:
        snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", str(key)).lower()
        if snake != key and snake in known and snake not in raw:
            out[snake] = out.pop(key)
    return out


def network_mode(value: Any, where: str) -> tuple[str | None, list[str]]:
    """host, none, bridge, `service:<name>` (normalized), or an app network's name; a
    `container:` mode is left out (the service joins `default`), as the reference does."""
    if value is None:
        return None, []
    if not isinstance(value, str) or not value.strip():
        raise TargetStateError(f"{where}: network_mode must be a non-empty string")
    mode = value.strip()
    if mode.startswith("container:"):
        return None, [f"network_mode: {mode}"]
    if mode.startswith("service:"):
        peer = mode.removeprefix("service:").strip()
        if not peer:
            raise TargetStateError(f"{where}: network_mode: {mode!r} names no service")
        return f"service:{peer}", []
    return mode, []


def network_endpoints(
    networks: Any, where: str
) -> tuple[tuple[tuple[str, Endpoint], ...], list[str]]:
    """Per-network aliases and addresses of `networks: {name: {aliases, ipv4_address}}`."""
    if not isinstance(networks, dict):
        return (), []
    out, ignored = [], []
    for name, value in sorted(networks.items(), key=lambda kv: str(kv[0])):
        try:
            endpoint, left_out = opt.endpoint(value)
        except ValueError as exc:
            raise TargetStateError(f"{where}: networks: {name}: {exc}") from None
        ignored += [f"networks: {name}: {key}" for key in left_out]
        if endpoint != Endpoint():
            out.append((str(name), endpoint))
    return tuple(out), ignored


def host_options(raw: dict[str, Any], network_mode: str | None, where: str) -> dict[str, Any]:
    """The resource, kernel and DNS keys as Composition fields (zero numbers = unset, as the
    reference reads them)."""
    values: dict[str, Any] = {}

    def read(key: str, parse: Any, *args: Any) -> None:
        if raw.get(key) is None:
            return
        try:
            value = parse(raw[key], *args)
        except ValueError as exc:
            raise TargetStateError(f"{where}: {key}: {exc}") from None
        if value not in (0, None, (), ""):
            values[key] = value

    def each(parse: Any) -> Any:
        # (types are checked where these keys are read above)
        return lambda value: tuple(parse(v) for v in _as_list(value))

    for key in ("shm_size", "mem_limit", "mem_reservation"):
        read(key, opt.memory_bytes)
    read("ulimits", opt.ulimits)
    read("pid", opt.namespace_mode, "pid")
    read("ipc", opt.namespace_mode, "ipc")
    read("sysctls", opt.sysctls, network_mode, values.get("ipc"))
    security = _strs(raw.get("security_opt", []), f"{where}: security_opt")
    read("security_opt", lambda v: tuple(o for o in security if opt.security_opt(o)))
    read("group_add", lambda v: tuple(opt.text(g) for g in _list(v, f"{where}: group_add")))
    read("cpuset", opt.cpuset)
    read("cpu_shares", opt.integer, 0, 262144)
    read("cpu_quota", opt.integer, -1)
    read("cpus", opt.nano_cpus)
    read("oom_score_adj", opt.integer, -1000, 1000)
    read("pids_limit", opt.integer, -1)
    read("mac_address", opt.mac_address)
    read("expose", lambda v: tuple(p for e in _list(v, "expose") for p in opt.expose(e)))
    read("dns_search", lambda v: _strs(_as_list(v), f"{where}: dns_search"))
    read("dns_opt", lambda v: _strs(_as_list(v), f"{where}: dns_opt"))
    read("userns_mode", lambda v: _one_of(v, ("host",)))
    for key in ("domainname", "cgroup_parent"):
        read(key, lambda v, k=key: _str(v, f"{where}: {k}") or None)
    read("oom_kill_disable", lambda v: _bool(v, f"{where}: oom_kill_disable") or None)
    # cheap checks of keys parsed above, as the engine would make them
    read("cap_add", each(opt.capability))
    read("cap_drop", each(opt.capability))
    read("devices", each(opt.device))
    read("user", lambda v: opt.user(_str(v, f"{where}: user")))
    read("dns", each(opt.ip_address))
    if "cpu_quota" in values and "cpus" in values:
        raise TargetStateError(f"{where}: cpus: can't be set together with cpu_quota")
    limit, reservation = values.get("mem_limit"), values.get("mem_reservation")
    for key in ("mem_limit", "mem_reservation"):
        if key in values and values[key] < opt.MIN_MEMORY:
            raise TargetStateError(f"{where}: {key}: below the engine's minimum of 6 MiB")
    if limit is not None and reservation is not None and limit < reservation:
        raise TargetStateError(f"{where}: mem_limit: below mem_reservation")
    for key in ("cap_add", "cap_drop", "devices", "user", "dns"):
        values.pop(key, None)
    if "cpus" in values:
        values["nano_cpus"] = values.pop("cpus")
    return values


def _one_of(value: Any, allowed: tuple[str, ...]) -> str:
    if value == "" or value is None:
        return ""
    if value not in allowed:
        raise ValueError(f"{value!r} is not supported (only {', '.join(allowed)})")
    return str(value)


def ignored_security_opts(raw: dict[str, Any], where: str) -> list[str]:
    """SELinux `label` options, which the reference leaves out (with a warning)."""
    opts = _strs(raw.get("security_opt", []), f"{where}: security_opt")
    return [f"security_opt: {o}" for o in opts if opt.security_opt(o) is None]
