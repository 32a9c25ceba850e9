import re

from agent.api.metrics import AgentMetrics
from agent.api.metrics_flows import Flows
from agent.events.bus import Bus
from agent.events.kinds import (
    DownloadProgress,
    PollDone,
    PullStarted,
    ReportFailed,
    StatusChanged,
    UpdateLockHeld,
    UpdateLockReleased,
    UpdateStatusChanged,
)
from agent.model import UpdateStatus
from tests.unit.api.metrics_fakes import fake_agent


def status(value, at, previous=None):
    return UpdateStatusChanged("a", "r", UpdateStatus(value), previous, at)


def test_bus_events_become_counters_and_histograms():
    bus = Bus()
    metrics = AgentMetrics(fake_agent(), bus)
    for event in (
        PollDone(ok=True, new_target=True),
        PollDone(ok=True),  # not modified: counted by device_agent_polls only
        PollDone(ok=False, error="timeout"),
        PollDone(ok=False, error="503"),
        ReportFailed("503"),
        PullStarted("i"),
        DownloadProgress("a", "i", 10, 100),
        DownloadProgress("a", "i", 30, 300),
        PullStarted("i"),  # a retry starts from zero again
        DownloadProgress("a", "i", 5, 50),
        status("downloading", 10.0),
        status("applying changes", 20.0),
        status("done", 25.0),
        UpdateLockHeld(1, "web"),
        UpdateLockReleased(1),
        StatusChanged(),
    ):  # fmt: skip
        bus.publish(event)
    assert bus.failures == 0
    text = metrics.render().decode()
    assert 'device_agent_poll_events_total{outcome="new_target"} 1.0' in text
    assert 'device_agent_poll_events_total{outcome="error"} 2.0' in text
    assert "device_agent_report_failures_total 1.0" in text
    assert "device_agent_download_bytes_total 350.0" in text
    assert "device_agent_apply_duration_seconds_sum 15.0" in text
    assert 'device_agent_apply_duration_seconds_bucket{le="15.0"} 1.0' in text
    assert "device_agent_lock_held_seconds_count 1.0" in text


def test_an_aborted_release_opens_no_duration_and_a_lock_is_timed_from_first_sight():
    t = [100.0]
    flows = Flows(clock=lambda: t[0])
    bus = Bus()
    flows.subscribe(bus)
    bus.publish(status("downloading", 1.0))
    bus.publish(status("aborted", 2.0))
    bus.publish(status("done", 9.0))  # the aborted release's clock was dropped: no duration
    assert flows.apply_seconds.counts == [0] * len(flows.apply_seconds.counts)
    bus.publish(UpdateLockHeld(7, "web"))
    t[0] = 130.0
    bus.publish(UpdateLockHeld(7, "db"))  # still held: the first sight counts
    t[0] = 160.0
    bus.publish(UpdateLockReleased(7))
    assert flows.lock_held_seconds.total == 60.0
    bus.publish(UpdateLockReleased(7))  # released again without a hold: nothing observed
    assert sum(flows.lock_held_seconds.counts) == 1


def test_levels_are_read_at_scrape_time():
    text = AgentMetrics(fake_agent(), Bus()).render().decode()
    assert 'device_agent_update_window_waiting{app="web",app_uuid="a1"} 1.0' in text
    found = re.search(r"^device_agent_update_window_next_open_seconds (\S+)$", text, re.M)
    assert found and 3500 < float(found.group(1)) <= 3600
    assert (
        'device_agent_update_status{app="web",app_uuid="a1",release="r2",status="downloading"} 1.0'
        in text
    )
    assert 'device_agent_download_progress_percent{app_uuid="a1",service="main"} 40.0' in text
    assert 'device_agent_update_waiting_for_lock{app_uuid="a1"} 1.0' in text
    assert "device_agent_polls_total 7.0" in text
    assert "device_agent_reports_sent_total 3.0" in text
    assert "device_agent_heartbeat_age_seconds NaN" in text
    assert "device_agent_converged 0.0" in text and "device_agent_local_mode 0.0" in text
    assert (
        'device_agent_device_status{legacy_status="Online (Heartbeat only)",'
        'status="Reduced Functionality"} 1.0' in text
    )
    assert 'device_agent_link_up{link="heartbeat"} 1.0' in text
    assert 'device_agent_link_up{link="cloudlink"} 0.0' in text


def test_content_type_is_prometheus_clients_and_counting_needs_no_prometheus_client():
    import subprocess
    import sys

    from prometheus_client import CONTENT_TYPE_LATEST

    from agent.api.metrics import CONTENT_TYPE

    assert CONTENT_TYPE == CONTENT_TYPE_LATEST
    # counting bus events must not load prometheus_client (≈ 1 MB): only a scrape does
    code = (
        "import sys; from agent.api.metrics import AgentMetrics; from agent.events.bus import Bus; "
        "from agent.events.kinds import PollDone, UpdateStatusChanged as U; "
        "from agent.model import UpdateStatus as S; b = Bus(); m = AgentMetrics(None, b); "
        "b.publish(PollDone(ok=True, new_target=True)); b.publish(U('a', 'r', S.DONE, None, 1.0)); "
        "print('prometheus_client' in sys.modules, m.flows.poll_events, b.failures)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False {'new_target': 1} 0"
