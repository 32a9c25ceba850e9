"""Probation verdicts (issue 14, point 1): pure logic, no I/O, no clock.

Design. A release that reaches `done` is on probation for `probation_s` (default 300 s). While
it is, the rollback controller (agent/reconcile/rollback.py, the shell) looks at the release's
containers every few seconds through the engine module (a list and an inspect per container,
in worker threads) and hands what it saw to `judge()`, which says: failed (with the service and
what it did), passed (probation over, nothing wrong), or nothing yet. A service fails the
release when
- it exited non-zero and the engine will not start it again (status `exited`/`dead`);
- it restarted more than `max_restarts` times (the engine's RestartCount; default 3);
- it has a healthcheck and is not `healthy` by probation start + its start period +
  `health_deadline_s` (default 60 s);
- it never started: no container, or one still `created`, after `health_deadline_s`.
Probation passes once it is over and every judged service has started (and is healthy, if it
has a healthcheck): a deadline beyond the probation's end is waited for. Services whose target
says `running: false`, and those labelled off, are not judged.

Settings are ours (never the reference's names): config vars `BALENA_DEVICE_AGENT_ROLLBACK`
(on/off, default on), `BALENA_DEVICE_AGENT_PROBATION_S`, `BALENA_DEVICE_AGENT_MAX_RESTARTS`,
`BALENA_DEVICE_AGENT_HEALTH_DEADLINE_S` (the cloud takes only `BALENA_`/`RESIN_` config vars;
`RESIN_` twins accepted); per service, labels `io.device-agent.rollback` (0/1),
`io.device-agent.max-restarts`, `io.device-agent.health-deadline-s`.

The shell decides the rest: on `failed` it persists the decision and re-targets the app to the
previous release (see rollback.py); the planner only ever sees the resulting target and the
set of aborted releases as inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agent.config import parse_bool

VAR_ENABLED = "DEVICE_AGENT_ROLLBACK"
VAR_PROBATION = "DEVICE_AGENT_PROBATION_S"
VAR_MAX_RESTARTS = "DEVICE_AGENT_MAX_RESTARTS"
VAR_HEALTH_DEADLINE = "DEVICE_AGENT_HEALTH_DEADLINE_S"
LABEL_ENABLED = "io.device-agent.rollback"
LABEL_MAX_RESTARTS = "io.device-agent.max-restarts"
LABEL_HEALTH_DEADLINE = "io.device-agent.health-deadline-s"


@dataclass(frozen=True)
class Thresholds:
    enabled: bool = True
    probation_s: float = 300.0
    max_restarts: int = 3
    health_deadline_s: float = 60.0


def _number(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a number") from exc
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{raw!r} is not a number of 0 or more")
    return value


def _fold(
    base: Thresholds, values: Mapping[str, str], names: tuple[str, str, str | None, str]
) -> tuple[Thresholds, list[str]]:
    """`names`: the keys for enabled, max restarts, probation (None: not settable), deadline."""
    out, errors = base, []
    k_on, k_restarts, k_probation, k_deadline = names
    parsers: tuple[tuple[str | None, str, Callable[[str], Any]], ...] = (
        (k_on, "enabled", parse_bool),
        (k_restarts, "max_restarts", lambda r: int(_number(r))),
        (k_probation, "probation_s", _number),
        (k_deadline, "health_deadline_s", _number),
    )
    for key, attr, parse in parsers:
        raw = values.get(key) if key is not None else None
        if raw is None:
            continue
        try:
            value: dict[str, Any] = {attr: parse(raw)}
            out = replace(out, **value)
        except ValueError as exc:
            errors.append(f"{key}: {exc}; keeping {getattr(base, attr)!r}")
    return out, errors


def fleet_thresholds(config_vars: Mapping[str, str]) -> tuple[Thresholds, list[str]]:
    """The fleet/device thresholds from the target's config vars (`BALENA_` wins over
    `RESIN_`), and errors for bad ones."""
    values: dict[str, str] = {}
    for name in (VAR_ENABLED, VAR_MAX_RESTARTS, VAR_PROBATION, VAR_HEALTH_DEADLINE):
        for prefix in ("BALENA_", "RESIN_"):
            raw = config_vars.get(prefix + name)
            if isinstance(raw, str):
                values[name] = raw
                break
    names = (VAR_ENABLED, VAR_MAX_RESTARTS, VAR_PROBATION, VAR_HEALTH_DEADLINE)
    thresholds, errors = _fold(Thresholds(), values, names)
    return thresholds, [f"BALENA_{e}" for e in errors]


def service_thresholds(fleet: Thresholds, labels: Mapping[str, str]) -> Thresholds:
    """One service's thresholds: the fleet's, overridden by its labels (bad ones ignored)."""
    names = (LABEL_ENABLED, LABEL_MAX_RESTARTS, None, LABEL_HEALTH_DEADLINE)
    return _fold(fleet, labels, names)[0]


@dataclass(frozen=True)
class ServiceObs:
    """What the engine says about one service of the release on probation."""

    service: str
    thresholds: Thresholds
    status: str | None  # the container's State.Status; None: there is no container
    exit_code: int = 0
    restart_count: int = 0
    health: str | None = None  # State.Health.Status; None: no healthcheck
    start_period_s: float = 0.0
    ever_started: bool = True


@dataclass(frozen=True)
class Verdict:
    passed: bool = False
    failure: str | None = None  # "<service> <what it did> (<detail>)"


PENDING = Verdict()


def judge(observed: Sequence[ServiceObs], since: float, now: float, probation_s: float) -> Verdict:
    """The verdict on a release on probation since `since` (unix time) at `now`."""
    elapsed = max(0.0, now - since)
    for obs in sorted(observed, key=lambda o: o.service):
        failure = _failure(obs, elapsed)
        if failure is not None:
            return Verdict(failure=failure)
    if elapsed >= probation_s and not any(_unsettled(obs) for obs in observed):
        return Verdict(passed=True)
    return PENDING


def _unsettled(obs: ServiceObs) -> bool:
    """Not yet healthy nor started, its deadline still ahead: probation waits for it."""
    if not obs.thresholds.enabled:
        return False
    not_started = obs.status is None or obs.status == "created" or not obs.ever_started
    return not_started or (obs.health is not None and obs.health != "healthy")


def _failure(obs: ServiceObs, elapsed: float) -> str | None:
    t = obs.thresholds
    if not t.enabled:
        return None
    name, secs = obs.service, f"{elapsed:.0f} s"
    if obs.status is None or obs.status == "created" or not obs.ever_started:
        if elapsed >= t.health_deadline_s:
            return f"{name} never started ({obs.status or 'no container'} after {secs})"
        return None
    if obs.restart_count > t.max_restarts:
        exits = obs.restart_count + (0 if obs.status == "running" else 1)
        return f"{name} exited {exits} times in {secs} (exit {obs.exit_code})"
    if obs.status in ("exited", "dead") and obs.exit_code != 0:
        return f"{name} exited (exit {obs.exit_code})"
    late = elapsed >= obs.start_period_s + t.health_deadline_s
    if obs.health is not None and obs.health != "healthy" and late:
        return f"{name} not healthy after {secs} ({obs.health})"
    return None
