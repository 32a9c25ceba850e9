"""Update windows (issue 14, point 2): the parser and "inside? when next?" in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.windows import (
    Window,
    WindowError,
    WindowSpec,
    describe_next,
    inside,
    next_open,
    parse_windows,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MON_FRI = frozenset(range(5))


def at(text: str, tz=BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_parse_days_ranges_lists_midnight_and_manual():
    assert parse_windows("Mon-Fri 02:00-04:00") == WindowSpec((Window(MON_FRI, 120, 240),))
    spec = parse_windows("Sat,Sun 10:00-12:00; fri 22:00-02:00, 13:00-24:00")
    assert spec.windows == (
        Window(frozenset({5, 6}), 600, 720),
        Window(frozenset({4}), 1320, 120),
        Window(frozenset(range(7)), 780, 1440),
    )
    assert parse_windows("Fri-Mon 01:00-02:00").windows[0].days == frozenset({4, 5, 6, 0})
    assert parse_windows("Tuesday 01:00-02:00").windows[0].days == frozenset({1})
    assert parse_windows(" MANUAL ") == WindowSpec(manual=True)
    assert parse_windows("").always and parse_windows("  ").always


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("Mon 2-3", "'2' is not a time (HH:MM)"),
        ("Funday 02:00-03:00", "'Funday' is not a day"),
        ("02:00-02:00", "starts and ends at the same time"),
        ("Mon 02:00-03:00;;", "an empty window"),
        ("Mon", "days with no HH:MM-HH:MM after them"),
        ("25:00-26:00", "'25:00' is not a time of day"),
        ("24:00-02:00", "'24:00' is not a time of day"),
        ("02:60-03:00", "'02:60' is not a time of day"),
        ("Mon 02:00", "has no HH:MM-HH:MM range"),
        ("sometimes", "'sometimes' is not a day"),
    ],
)
def test_malformed_settings_name_the_bad_part(raw: str, message: str):
    with pytest.raises(WindowError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_windows(raw)


def test_inside_and_next_on_a_fake_clock():
    spec = parse_windows("Mon-Fri 02:00-04:00")
    fri_noon = at("2026-12-04T12:00")  # a Friday
    assert not inside(spec, fri_noon, BERLIN)
    mon_2 = next_open(spec, fri_noon, BERLIN)
    assert mon_2 == at("2026-12-07T02:00")
    assert describe_next(mon_2, BERLIN) == "Mon 02:00"
    assert inside(spec, at("2026-12-07T02:00"), BERLIN)
    assert inside(spec, at("2026-12-07T03:59:59"), BERLIN)
    assert not inside(spec, at("2026-12-07T04:00"), BERLIN)  # the end is not inside
    assert next_open(spec, at("2026-12-07T03:00"), BERLIN) == at("2026-12-07T03:00")
    assert next_open(spec, at("2026-12-07T04:00"), BERLIN) == at("2026-12-08T02:00")


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts():
    spec = parse_windows("Fri 22:00-02:00")
    assert inside(spec, at("2026-12-04T23:00"), BERLIN)  # Friday
    assert inside(spec, at("2026-12-05T01:30"), BERLIN)  # Saturday morning: still Friday's
    assert not inside(spec, at("2026-12-05T02:00"), BERLIN)
    assert not inside(spec, at("2026-12-04T01:30"), BERLIN)  # Friday morning: Thursday's, none
    assert next_open(spec, at("2026-12-05T02:00"), BERLIN) == at("2026-12-11T22:00")


def test_the_time_zone_decides():
    spec = parse_windows("02:00-03:00")
    moment = datetime(2026, 12, 4, 1, 30, tzinfo=UTC).timestamp()  # 02:30 in Berlin
    assert inside(spec, moment, BERLIN)
    assert not inside(spec, moment, NEW_YORK)  # Thursday 20:30 there
    assert describe_next(next_open(spec, moment, NEW_YORK) or 0, NEW_YORK) == "Fri 02:00"


def test_manual_never_opens_and_none_is_always_open():
    now = at("2026-12-04T12:00")
    assert not inside(parse_windows("manual"), now, BERLIN)
    assert next_open(parse_windows("manual"), now, BERLIN) is None
    assert inside(parse_windows(""), now, BERLIN)
    assert next_open(parse_windows(""), now, BERLIN) == now


def test_dst_gaps_and_repeats_do_not_crash_and_still_open():
    # Europe/Berlin: 2026-03-29 02:00 -> 03:00 (02:30 does not exist); 2026-10-25 03:00 -> 02:00
    gap = parse_windows("Sun 02:00-02:30")
    before = at("2026-03-28T12:00")
    opens = next_open(gap, before, BERLIN)
    assert opens is not None and opens > before and inside(gap, opens, BERLIN)
    repeat = parse_windows("Sun 02:00-03:00")
    autumn = at("2026-10-24T12:00")
    opens = next_open(repeat, autumn, BERLIN)
    assert opens == at("2026-10-25T02:00") and inside(repeat, opens, BERLIN)
    assert inside(repeat, opens + 3600, BERLIN)  # the repeated hour is inside too


_ZONES = [BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]


@st.composite
def specs(draw) -> WindowSpec:
    windows = []
    for _ in range(draw(st.integers(1, 3))):
        days = draw(st.frozensets(st.integers(0, 6), min_size=1))
        start = draw(st.integers(0, 1439))
        end = draw(st.integers(1, 1440).filter(lambda e: e % 1440 != start))  # noqa: B023
        windows.append(Window(days, start, end))
    return WindowSpec(tuple(windows))


@settings(max_examples=300, deadline=None)
@given(
    spec=specs(),
    moment=st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1)),
    zone=st.sampled_from(_ZONES),
)
def test_next_open_is_not_before_now_and_is_inside(spec: WindowSpec, moment, zone):
    now = moment.replace(tzinfo=UTC).timestamp()
    opens = next_open(spec, now, zone)
    assert opens is not None  # every day-set meets within a week (+ DST slack)
    assert opens >= now
    assert inside(spec, opens, zone)
    assert (opens == now) == inside(spec, now, zone)
    assert opens - now <= timedelta(days=8).total_seconds()


@settings(max_examples=200, deadline=None)
@given(spec=specs(), moment=st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1)))
def test_nothing_between_now_and_next_open_is_inside(spec: WindowSpec, moment):
    now = moment.replace(tzinfo=UTC).timestamp()
    opens = next_open(spec, now, BERLIN)
    assert opens is not None
    step = (opens - now) / 50
    assert not any(inside(spec, now + i * step, BERLIN) for i in range(1, 50)) or opens == now
