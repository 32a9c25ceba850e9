"""Update windows: when a downloaded release may be applied (issue 14, point 2).

Pure: parsing and "is this moment inside? when does the next window open?" for a given time
zone. The clock, the time zone lookup and the NTP probe live in the shell
(agent/reconcile/window_gate.py).

Syntax of `DEVICE_AGENT_UPDATE_WINDOW` (fleet/device config var, `BALENA_`/`RESIN_` prefix):

- empty or unset: no window, releases apply as soon as they are downloaded;
- `manual`: every release waits at `downloaded` until `POST /v1/update` asks for it;
- otherwise windows separated by `;` or `,`, each `[DAYS ]HH:MM-HH:MM`: DAYS is a day
  (`Mon`), a range (`Mon-Fri`, `Fri-Mon` wraps), `daily` or left out (every day); a day list
  written with commas (`Sat,Sun 10:00-12:00`) applies to the time that follows it. The end may
  be `24:00`; an end before the start crosses midnight (`Fri 22:00-02:00` is Friday 22:00 to
  Saturday 02:00). Times are wall-clock times in the device's time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import tzinfo as TzInfo

_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
MANUAL = "manual"


class WindowError(ValueError):
    """A malformed update window setting."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # weekday the window starts on, Monday = 0
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1..1440; end <= start: ends the next day


@dataclass(frozen=True)
class WindowSpec:
    """A parsed setting: `manual`, no window at all (`windows` empty), or windows."""

    windows: tuple[Window, ...] = ()
    manual: bool = False

    @property
    def always(self) -> bool:
        return not self.manual and not self.windows


_DAY_WORDS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str, raw: str) -> int:
    """`Mon`, `mon`, `Monday`, `Tues`: a day's index, Monday = 0."""
    word = name.strip().lower()
    for index, full in enumerate(_DAY_WORDS):
        if len(word) >= 3 and full.startswith(word):
            return index
    raise WindowError(f"{raw!r}: {name.strip()!r} is not a day (Mon..Sun)")


def _days(text: str, raw: str) -> frozenset[int]:
    text = text.strip()
    if text.lower() in ("", "daily", "every day"):
        return frozenset(range(7))
    if "-" in text:
        first, _, last = text.partition("-")
        a, b = _day(first, raw), _day(last, raw)
        return frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset({_day(text, raw)})


def _minutes(text: str, raw: str, *, is_end: bool) -> int:
    m = _TIME.match(text.strip())
    if not m:
        raise WindowError(f"{raw!r}: {text.strip()!r} is not a time (HH:MM)")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not is_end)):
        raise WindowError(f"{raw!r}: {text.strip()!r} is not a time of day")
    return hours * 60 + minutes


def _is_days_only(piece: str) -> bool:
    return not any(ch.isdigit() for ch in piece)


def parse_windows(raw: str) -> WindowSpec:
    """The setting's windows; raises WindowError with a message naming the bad part."""
    text = raw.strip()
    if not text:
        return WindowSpec()
    if text.lower() == MANUAL:
        return WindowSpec(manual=True)
    windows: list[Window] = []
    pending_days: set[int] = set()
    for piece in re.split(r"[;,]", text):
        piece = piece.strip()
        if not piece:
            raise WindowError(f"{raw!r}: an empty window (two separators in a row?)")
        if _is_days_only(piece):  # `Sat,Sun 10:00-12:00`: Sat applies to the next time
            pending_days |= _days(piece, raw)
            continue
        days_text, _, span = piece.rpartition(" ")
        start_text, sep, end_text = span.partition("-")
        if not sep:
            raise WindowError(f"{raw!r}: {piece!r} has no HH:MM-HH:MM range")
        start = _minutes(start_text, raw, is_end=False)
        end = _minutes(end_text, raw, is_end=True)
        if start == end % 1440 and end != 1440:
            raise WindowError(f"{raw!r}: {piece!r} starts and ends at the same time")
        days = set(_days(days_text, raw)) if days_text.strip() or not pending_days else set()
        windows.append(Window(frozenset(days | pending_days), start, end))
        pending_days = set()
    if pending_days:
        raise WindowError(f"{raw!r}: days with no HH:MM-HH:MM after them")
    return WindowSpec(windows=tuple(windows))


def _at(day: date, minutes: int, tz: TzInfo) -> float:
    """The unix time of `minutes` after midnight of `day` on the wall clock of `tz` (a time a
    DST change skips maps to the same time in the offset before the change)."""
    extra, minutes = divmod(minutes, 1440)  # 24:00 is the next day's midnight
    wall = time(minutes // 60, minutes % 60)
    return datetime.combine(day + timedelta(days=extra), wall, tzinfo=tz).timestamp()


def _spans(window: Window, day: date, tz: TzInfo) -> tuple[float, float] | None:
    """The window's opening that starts on `day`, as unix times, or None."""
    if day.weekday() not in window.days:
        return None
    end_day = day + timedelta(days=1) if window.end <= window.start else day
    start = _at(day, window.start, tz)
    end = _at(end_day, window.end, tz)
    return (start, end) if end > start else None  # empty when a DST change swallows it


def _openings(spec: WindowSpec, now: float, tz: TzInfo, days: int) -> list[tuple[float, float]]:
    today = datetime.fromtimestamp(now, tz).date()
    out = []
    for offset in range(-2, days):
        day = today + timedelta(days=offset)
        for window in spec.windows:
            span = _spans(window, day, tz)
            if span is not None:
                out.append(span)
    return out


def inside(spec: WindowSpec, now: float, tz: TzInfo) -> bool:
    """Whether a release may be applied at unix time `now`."""
    if spec.manual:
        return False
    if spec.always:
        return True
    return any(start <= now < end for start, end in _openings(spec, now, tz, 1))


def next_open(spec: WindowSpec, now: float, tz: TzInfo) -> float | None:
    """The earliest unix time ≥ `now` inside a window (`now` itself when inside), or None
    (`manual`)."""
    if spec.manual:
        return None
    if spec.always or inside(spec, now, tz):
        return now
    starts = [start for start, end in _openings(spec, now, tz, 9) if start > now]
    return min(starts) if starts else None


def describe_next(moment: float, tz: TzInfo) -> str:
    """`Tue 02:00`: a window's start on the device's wall clock."""
    return datetime.fromtimestamp(moment, tz).strftime("%a %H:%M")


def zone_of(name: str) -> TzInfo | None:
    """The IANA time zone `name` (`Europe/Berlin`, `UTC`); None for ""; ValueError if unknown."""
    name = name.strip()
    if not name:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # with sysconfig: ≈ 0.2 MB, on first use

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not a known time zone (e.g. Europe/Berlin, UTC)") from exc
