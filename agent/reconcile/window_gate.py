"""The shell around update windows: clock, time zone and NTP sync, turned into the planner's
input (`PlanContext.hold_apply`). The rules live in agent/model/windows.py.

A malformed setting holds updates (a typo must not apply at noon on every device of a fleet):
the reason says what is wrong, the config error is logged and in the agent's status.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import tzinfo as TzInfo
from pathlib import Path

from agent.model.windows import (
    WindowError,
    describe_next,
    inside,
    next_open,
    parse_windows,
    zone_of,
)

RECHECK_MAX_S = 60.0  # while held, the window is looked at again at least this often
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised (STA_UNSYNC)
MANUAL_REASON = "waiting for a manual update (POST /v1/update): update window is manual"
UNSYNCED_REASON = (
    "waiting for the update window: the device's clock is not synchronised yet (no NTP sync)"
)


@dataclass(frozen=True)
class Verdict:
    hold: str | None = None  # why a downloaded release must not be applied now; None: apply
    next_open: float | None = None  # unix time the window next opens (None: unknown / manual)
    recheck_s: float = RECHECK_MAX_S  # when to look again while held
    setting: str = ""


OPEN = Verdict()


def adjtimex_synced() -> bool:
    """True unless the kernel says the clock is unsynchronised (adjtimex's TIME_ERROR), as
    `timedatectl`'s NTPSynchronized. No libc / no syscall: assumed synchronised."""
    import ctypes  # ≈ 0.2 MB: only while a timed window is set

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, modes 0: read only
        return int(libc.adjtimex(buf)) != TIME_ERROR
    except (OSError, AttributeError):
        return True


def system_zone(env: Mapping[str, str] = os.environ) -> TzInfo:
    """The device's time zone: $TZ, else /etc/localtime, else UTC."""
    try:
        zone = zone_of(env.get("TZ", "").lstrip(":"))
        if zone is not None:
            return zone
    except ValueError:
        pass
    from zoneinfo import ZoneInfo  # with sysconfig: ≈ 0.2 MB, only while a timed window is set

    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        with localtime.open("rb") as fh:
            return ZoneInfo.from_file(fh)
    except (OSError, ValueError):
        return UTC


class WindowGate:
    def __init__(
        self,
        setting: Callable[[], tuple[str, str]],  # (window, time zone name) from the fleet vars
        clock_sync: str = "probe",  # config.json clockSync: probe | synced | unsynced
        clock: Callable[[], float] = time.time,
        probe: Callable[[], bool] = adjtimex_synced,
        zone: Callable[[], TzInfo] = system_zone,
    ) -> None:
        self._setting = setting
        self._clock_sync = clock_sync
        self._clock = clock
        self._probe = probe
        self._zone = zone
        self.last = OPEN

    def synced(self) -> bool:
        if self._clock_sync != "probe":
            return self._clock_sync == "synced"
        return self._probe()

    def verdict(self) -> Verdict:
        self.last = self._verdict()
        return self.last

    def _verdict(self) -> Verdict:
        raw, zone_name = self._setting()
        try:
            spec = parse_windows(raw)
            named = zone_of(zone_name)  # a bad name holds even an always-open window
        except (WindowError, ValueError) as exc:
            reason = f"holding updates: the update window setting is invalid ({exc})"
            return Verdict(hold=reason, setting=raw)
        if spec.always:
            return Verdict(setting=raw)
        if spec.manual:
            return Verdict(hold=MANUAL_REASON, setting=raw)
        if not self.synced():
            return Verdict(hold=UNSYNCED_REASON, setting=raw, recheck_s=5.0)
        zone = named or self._zone()
        now = self._clock()
        if inside(spec, now, zone):
            return Verdict(setting=raw)
        opens = next_open(spec, now, zone)
        if opens is None:  # no day at all in the next week: cannot happen with a parsed spec
            return Verdict(hold="waiting for the update window", setting=raw)
        reason = f"waiting for the update window (next: {describe_next(opens, zone)})"
        recheck = min(RECHECK_MAX_S, max(0.05, opens - now))
        return Verdict(hold=reason, next_open=opens, recheck_s=recheck, setting=raw)
