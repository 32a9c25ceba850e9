"""The fleet's config vars in force: the target's `config` folded into a `FleetConfig`
(agent/config.py parses them). One holder, read by everyone through `current`; a change is
logged once and published on the bus (`FleetConfigChanged`: e.g. the cloud-log channel, whose
SUPERVISOR_LOG_CONTROL may have flipped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import structlog

from agent.config import FleetConfig, apply_config_vars
from agent.events.bus import Bus
from agent.events.kinds import FleetConfigChanged

log = structlog.get_logger("agent.local")


class ConfigErrors(Protocol):
    """Where invalid config vars are shown (the status board: the API and the CLI read them)."""

    config_errors: list[str]


class FleetVars:
    def __init__(
        self,
        default_interval_ms: int,
        errors: ConfigErrors,
        local_mode: bool = False,
        bus: Bus | None = None,
    ) -> None:
        """`local_mode`: config.json's `localMode`, which a config var can't switch off;
        `bus`: the agent's (a bus of its own, heard by nobody, when None)."""
        self._default_interval_ms = default_interval_ms
        self._errors = errors
        self._config_local_mode = local_mode
        self.current = FleetConfig(poll_interval_ms=default_interval_ms)
        self._bus = bus if bus is not None else Bus()

    @property
    def local_mode(self) -> bool:
        """Local mode is on (config.json or the SUPERVISOR_LOCAL_MODE var)."""
        return self._config_local_mode or self.current.local_mode

    @property
    def poll_interval_s(self) -> float:
        return self.current.poll_interval_ms / 1000.0

    def apply(self, config_vars: Mapping[str, str]) -> None:
        """Fold a target's config vars in; a bad value keeps the previous one and is logged
        and shown (`config_errors`)."""
        new, errors = apply_config_vars(self.current, config_vars, self._default_interval_ms)
        for error in errors:
            log.error("config_var_invalid", error=error)
        self._errors.config_errors = errors
        if new == self.current:
            return
        old, self.current = self.current, new
        log.info("config_changed", **{k: v for k, v in vars(new).items() if getattr(old, k) != v})
        self._bus.publish(FleetConfigChanged(new))
