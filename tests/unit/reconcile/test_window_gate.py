"""The update window's shell (agent/reconcile/window_gate.py) on a fake clock, and the planner
holding a downloaded release on its verdict (issue 14, point 2)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from agent.config import FleetConfig, apply_config_vars
from agent.model import UpdateStatus
from agent.reconcile.planner import plan
from agent.reconcile.steps import PlanContext, Pull
from agent.reconcile.window_gate import MANUAL_REASON, UNSYNCED_REASON, WindowGate
from tests.unit.reconcile.factories import converge, old_release_state, state, two_service_target
from tests.unit.reconcile.sim import apply_all

BERLIN = ZoneInfo("Europe/Berlin")


class FakeClock:
    def __init__(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso).replace(tzinfo=BERLIN).timestamp()

    def __call__(self) -> float:
        return self.now


def gate(setting: str, clock: FakeClock, *, synced: bool = True, tz: str = "") -> WindowGate:
    return WindowGate(
        lambda: (setting, tz), "probe", clock, probe=lambda: synced, zone=lambda: BERLIN
    )


def test_outside_the_window_holds_with_the_next_start_and_opens_on_time():
    clock = FakeClock("2026-12-04T12:00")  # Friday noon
    g = gate("Mon-Fri 02:00-04:00", clock)
    v = g.verdict()
    assert v.hold == "waiting for the update window (next: Mon 02:00)"
    assert v.next_open == FakeClock("2026-12-07T02:00").now
    assert 0 < v.recheck_s <= 60
    clock.now = FakeClock("2026-12-07T02:00").now
    assert g.verdict().hold is None
    clock.now = FakeClock("2026-12-07T01:59:59.5").now
    assert g.verdict().recheck_s == 0.5  # woken when it opens, not a minute late


def test_no_setting_never_holds_and_manual_always_does():
    clock = FakeClock("2026-12-04T12:00")
    assert gate("", clock, synced=False).verdict().hold is None
    assert gate("manual", clock).verdict().hold == MANUAL_REASON


def test_an_unsynchronised_clock_waits_and_says_so():
    v = gate("Mon-Fri 00:00-24:00", FakeClock("2026-12-04T12:00"), synced=False).verdict()
    assert v.hold == UNSYNCED_REASON
    forced = WindowGate(lambda: ("00:00-24:00", ""), "synced", probe=lambda: False)
    assert forced.verdict().hold is None  # config.json clockSync overrides the probe
    unsynced = WindowGate(lambda: ("00:00-24:00", ""), "unsynced", probe=lambda: True)
    assert unsynced.verdict().hold == UNSYNCED_REASON


def test_a_malformed_setting_or_zone_holds_and_says_why():
    clock = FakeClock("2026-12-04T12:00")
    v = gate("Mon-Fri 2-4", clock).verdict()
    assert v.hold is not None and v.hold.startswith("holding updates: the update window")
    assert "'2' is not a time (HH:MM)" in v.hold
    v = gate("02:00-04:00", clock, tz="Mars/Olympus").verdict()
    assert v.hold is not None and "'Mars/Olympus' is not a known time zone" in v.hold


def test_the_window_time_zone_var_overrides_the_system_zone():
    clock = FakeClock("2026-12-04T03:00")  # 03:00 Berlin = 21:00 New York (Thursday)
    assert gate("02:00-04:00", clock).verdict().hold is None
    held = gate("02:00-04:00", clock, tz="America/New_York").verdict().hold
    assert held == "waiting for the update window (next: Fri 02:00)"


def test_config_vars_keep_a_bad_window_and_report_it():
    vars_ = {"BALENA_DEVICE_AGENT_UPDATE_WINDOW": "Mon-Fri 25:00-04:00"}
    fleet, errors = apply_config_vars(FleetConfig(), vars_, 60_000)
    assert fleet.update_window == "Mon-Fri 25:00-04:00"  # held by the gate, not dropped
    assert errors == [
        "BALENA_DEVICE_AGENT_UPDATE_WINDOW: 'Mon-Fri 25:00-04:00': '25:00' is not a time of "
        "day; holding updates until it is fixed"
    ]
    fleet, errors = apply_config_vars(
        fleet,
        {
            "RESIN_DEVICE_AGENT_UPDATE_WINDOW": "manual",
            "BALENA_DEVICE_AGENT_UPDATE_WINDOW_TZ": "UTC",
        },
        60_000,
    )
    assert (fleet.update_window, fleet.update_window_tz, errors) == ("manual", "UTC", [])
    fleet, _ = apply_config_vars(fleet, {}, 60_000)
    assert fleet.update_window == ""  # unset: no window


HOLD = "waiting for the update window (next: Mon 02:00)"


def test_the_planner_downloads_then_holds_at_downloaded_with_the_reason():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:2", "r2", 2)
    current = old_release_state(old)
    ctx = PlanContext(hold_apply=HOLD)
    p1 = plan(current, new, ctx)
    assert p1.steps == (Pull("web:2", "a1", ("web",)),)  # downloads at once
    s2 = apply_all(current, p1.steps)
    p2 = plan(s2, new, ctx)
    assert p2.steps == ()
    assert p2.apps["a1"].status is UpdateStatus.DOWNLOADED
    assert p2.apps["a1"].held and p2.apps["a1"].reason == HOLD
    # the window opens: applied
    final, plans = converge(s2, new)
    assert plans[-1].apps["a1"].status is UpdateStatus.DONE
    assert {c.release_uuid for c in final.containers} == {"r2"}


def test_an_apply_under_way_finishes_when_the_window_closes():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:2", "r2", 2)
    s2 = apply_all(old_release_state(old), (Pull("web:2", "a1", ("web",)),))
    first = plan(s2, new, PlanContext())  # the window was open for this pass
    s3 = apply_all(s2, first.steps)
    assert any(c.release_uuid == "r2" for c in s3.containers)
    closed = plan(s3, new, PlanContext(hold_apply=HOLD))
    assert not closed.apps["a1"].held and closed.steps  # goes on


def test_a_first_install_and_a_same_release_change_are_not_held():
    new = two_service_target("web:2", "r2", 2)
    fresh = apply_all(state(), plan(state(), new, PlanContext(hold_apply=HOLD)).steps)
    p = plan(fresh, new, PlanContext(hold_apply=HOLD))
    assert not p.apps["a1"].held and p.steps  # nothing running to disturb


def test_an_app_being_rolled_back_is_not_held():
    old = two_service_target("web:1", "r1", 1)
    new = two_service_target("web:2", "r2", 2)
    s2 = apply_all(old_release_state(old), (Pull("web:2", "a1", ("web",)),))
    exempt = plan(s2, new, PlanContext(hold_apply=HOLD, hold_exempt=frozenset({"a1"})))
    assert not exempt.apps["a1"].held and exempt.steps
    other = plan(s2, new, PlanContext(hold_apply=HOLD, hold_exempt=frozenset({"a2"})))
    assert other.apps["a1"].held and not other.steps
