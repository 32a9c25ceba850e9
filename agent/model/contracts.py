"""Service contracts: a release's services may require a supervisor, OS, kernel, L4T version,
device type or architecture (the `contract` of a target service, `requires`). As the reference
does (src/lib/contracts.ts, with balena's contrato): an app with a service whose requirements
the device doesn't meet is rejected, unless that service is labelled
`io.balena.features.optional`, in which case just that service is not run. A malformed
contract rejects its app (the reference refuses the whole target).

Requirement semantics, as contrato's: a requirement of a type the device has no fact about
(e.g. `sw.l4t` off a Jetson) is not checked; `slug` must equal the device's; `version` is an
npm-style semver range (`>=2.0.0 <3`, `^1.2`, `~1.2.3`, `1.x`, `1.2.3 - 2`, `a || b`) over the
device's version, build metadata ignored; `{or: [...]}` holds when one of its members does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.model.target import AppSpec, TargetState

OPTIONAL_LABELS = ("io.balena.features.optional", "io.resin.features.optional")
TRUTHY = frozenset({"1", "true", "on"})
REQUIREMENT_TYPES = frozenset(
    {"sw.supervisor", "sw.l4t", "sw.os", "sw.kernel", "hw.device-type", "arch.sw"}
)


@dataclass(frozen=True)
class DeviceContract:
    """What the device offers contracts (the reference's initializeContractRequirements)."""

    supervisor_version: str
    device_type: str
    device_arch: str
    os_slug: str | None = None
    os_version: str | None = None
    kernel_slug: str | None = None
    kernel_version: str | None = None
    l4t_version: str | None = None

    def children(self) -> dict[str, tuple[str | None, str | None]]:
        """requirement type -> (slug, version) of the device's contract of that type"""
        out: dict[str, tuple[str | None, str | None]] = {
            "sw.supervisor": (None, self.supervisor_version),
            "hw.device-type": (self.device_type, None),
            "arch.sw": (self.device_arch, None),
        }
        if self.l4t_version:
            out["sw.l4t"] = (None, self.l4t_version)
        if self.os_version and self.os_slug:
            out["sw.os"] = (self.os_slug, self.os_version)
        if self.kernel_version and self.kernel_slug:
            out["sw.kernel"] = (self.kernel_slug, self.kernel_version)
        return out


def kernel_facts(release: str, system: str) -> dict[str, str | None]:
    """`uname -r` / `uname -s` -> kernel version (X.Y.Z), slug, and L4T version (`-l4t-r32.2`
    gives 32.2.0), as the reference parses them."""
    kernel = re.match(r"^(\d+\.\d+\.\d+)", release)
    l4t = re.match(r"^.*-l4t-r(\d+\.\d+(\.?\d+)?).*$", release)
    l4t_version = None
    if l4t is not None:
        l4t_version = l4t.group(1) + (".0" if l4t.group(2) is None else "")
    return {
        "kernel_version": kernel.group(1) if kernel else None,
        "kernel_slug": system.lower(),
        "l4t_version": l4t_version,
    }


def parse_contract(raw: Any) -> list[list[Mapping[str, Any]]]:
    """A contract's requirements as a conjunction of disjunctions; ValueError when malformed."""
    if not isinstance(raw, dict):
        raise ValueError("must be an object")
    if not isinstance(raw.get("type", "sw.container"), str):
        raise ValueError("type must be a string")
    if raw.get("slug") is not None and not isinstance(raw["slug"], str):
        raise ValueError("slug must be a string")
    requires = raw.get("requires") or []
    if not isinstance(requires, list):
        raise ValueError("requires must be a list")
    out: list[list[Mapping[str, Any]]] = []
    for req in requires:
        if isinstance(req, dict) and "or" in req:
            members = req["or"]
            if not isinstance(members, list):
                raise ValueError("requires: 'or' must be a list")
            out.append([_requirement(m) for m in members])
        else:
            out.append([_requirement(req)])
    return out


def _requirement(raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ValueError("a requirement must be an object with a string type")
    if raw["type"] not in REQUIREMENT_TYPES:
        raise ValueError(f"{raw['type']} is not a valid contract requirement type")
    for key in ("slug", "version"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ValueError(f"requirement {raw['type']}: {key} must be a string")
    return raw


def requirements_met(requires: list[list[Mapping[str, Any]]], device: DeviceContract) -> bool:
    children = device.children()

    def holds(req: Mapping[str, Any]) -> bool:
        child = children.get(req["type"])
        if child is None:
            return True  # no fact of that type on this device: not checked (contrato)
        slug, version = child
        if req.get("slug") is not None and req["slug"] != slug:
            return False
        if req.get("version") is not None:
            return version is not None and satisfies(version, req["version"])
        return True

    return all(any(holds(r) for r in disjunct) for disjunct in requires)


@dataclass(frozen=True)
class ContractResult:
    target: TargetState
    not_run: Mapping[str, tuple[str, ...]]  # app name -> optional services left out


def apply_contracts(target: TargetState, body: Any, device: DeviceContract) -> ContractResult:
    """The target with apps whose contracts fail rejected and failing optional services
    dropped. `body` is the raw document `target` was parsed from (for the contracts)."""
    apps: dict[str, AppSpec] = dict(target.apps)
    not_run: dict[str, tuple[str, ...]] = {}
    for uuid, app in target.apps.items():
        if app.release is None or app.rejection:
            continue
        raw_services = _raw_services(body, target.device_uuid, uuid, app.release.uuid)
        unmet: list[str] = []
        optional: list[str] = []
        try:
            for name, svc in app.release.services.items():
                raw = raw_services.get(name)
                contract = raw.get("contract") if isinstance(raw, dict) else None
                if contract is None:
                    continue
                try:
                    requires = parse_contract(contract)
                except ValueError as exc:
                    raise ValueError(f"service {name}: contract: {exc}") from None
                if not requirements_met(requires, device):
                    unmet.append(name)
                    if any(str(svc.labels.get(k, "")).lower() in TRUTHY for k in OPTIONAL_LABELS):
                        optional.append(name)
        except ValueError as exc:
            apps[uuid] = replace(app, release=None, rejection=f"app {app.name}: {exc}")
            continue
        if len(unmet) > len(optional):
            reason = f"app {app.name}: services with unmet requirements: {', '.join(unmet)}"
            apps[uuid] = replace(app, release=None, rejection=reason)
        elif optional:
            kept = {n: s for n, s in app.release.services.items() if n not in optional}
            apps[uuid] = replace(app, release=replace(app.release, services=kept))
            not_run[app.name] = tuple(optional)
    return ContractResult(replace(target, apps=apps), not_run)


def _raw_services(body: Any, device: str, app: str, release: str) -> Mapping[str, Any]:
    try:
        services = body[device]["apps"][app]["releases"][release]["services"]
    except (KeyError, TypeError):
        return {}
    return services if isinstance(services, dict) else {}


# --- npm-style semver ranges -------------------------------------------------------------------

_VERSION = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.*-]*)?$"
)
_PARTIAL = re.compile(
    r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.*-]*)?$"
)
# (major, minor, patch, 1 for a release / 0 for a pre-release, pre-release identifiers)
_Key = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def _key(major: int, minor: int, patch: int, pre: str | None = None) -> _Key:
    """Sorts as semver: a pre-release before its release, numeric identifiers before others."""
    if pre is None:
        return (major, minor, patch, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".") if p)
    return (major, minor, patch, 0, parts)


def _floor(major: int, minor: int, patch: int) -> _Key:
    """Below every pre-release of major.minor.patch (an exclusive upper bound)."""
    return (major, minor, patch, 0, ())


def parse_version(text: str) -> _Key | None:
    """A device's version (`2.113.4+rev1`, `32.2`, `6.1.0-rc1`): missing parts are 0."""
    m = _VERSION.match(text.strip())
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    return _key(int(major), int(minor or 0), int(patch or 0), pre)


def satisfies(version: str, range_text: str) -> bool:
    """Whether `version` is in the npm-style semver range; False for either malformed."""
    v = parse_version(version)
    if v is None:
        return False
    for alternative in range_text.split("||"):
        comparators = _comparators(alternative)
        if comparators is None or not all(_compare(v, op, k) for op, k in comparators):
            continue
        # as npm's semver: a pre-release only matches a range naming one of its version
        if v[3] == 1 or any(k[3] == 0 and k[4] and k[:3] == v[:3] for _, k in comparators):
            return True
    return False


def _compare(v: _Key, op: str, k: _Key) -> bool:
    return {
        "<": v < k,
        "<=": v <= k,
        ">": v > k,
        ">=": v >= k,
        "=": v == k,
    }[op]


def _comparators(text: str) -> list[tuple[str, _Key]] | None:
    text = re.sub(r"(<=|>=|<|>|=|~>?|\^)\s+", r"\1", text.strip())
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen:
        low, high = _partial(hyphen.group(1)), _partial(hyphen.group(2))
        if low is None or high is None:
            return None
        return [*_desugar(">=", low), *_desugar("<=", high)]
    out: list[tuple[str, _Key]] = []
    for token in text.split() or ["*"]:
        m = re.fullmatch(r"(<=|>=|<|>|=|~>?|\^)?(.*)", token)
        assert m is not None
        partial = _partial(m.group(2))
        if partial is None:
            return None
        out += _desugar(m.group(1) or "=", partial)
    return out


_Partial = tuple[int | None, int | None, int | None, str | None]


def _partial(text: str) -> _Partial | None:
    m = _PARTIAL.match(text)
    if m is None:
        return None

    def num(part: str | None) -> int | None:
        return None if part is None or part in "xX*" else int(part)

    major, minor, patch = num(m.group(1)), num(m.group(2)), num(m.group(3))
    if major is None:
        minor = patch = None
    elif minor is None:
        patch = None
    return major, minor, patch, m.group(4) if patch is not None else None


def _desugar(op: str, p: _Partial) -> list[tuple[str, _Key]]:
    major, minor, patch, pre = p
    if major is None:
        return [] if op in ("=", ">=", "<=", "~", "~>", "^") else [("<", _floor(0, 0, 0))]
    full = _key(major, minor or 0, patch or 0, pre)
    if op in ("~", "~>"):
        upper = _floor(major, minor + 1, 0) if minor is not None else _floor(major + 1, 0, 0)
        return [(">=", full), ("<", upper)]
    if op == "^":
        if major > 0 or minor is None:
            upper = _floor(major + 1, 0, 0)
        elif minor > 0 or patch is None:
            upper = _floor(0, minor + 1, 0)
        else:
            upper = _floor(0, 0, patch + 1)
        return [(">=", full), ("<", upper)]
    if patch is not None:
        return [(op, full)]
    # a partial version: the range of everything it covers
    low = _floor(major, minor or 0, 0)
    high = _floor(major, minor + 1, 0) if minor is not None else _floor(major + 1, 0, 0)
    return {
        "=": [(">=", low), ("<", high)],
        ">=": [(">=", low)],
        ">": [(">=", high)],
        "<": [("<", low)],
        "<=": [("<", high)],
    }[op]
