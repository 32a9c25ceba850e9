import re

from agent.api.metrics import AgentMetrics
from tests.unit.api.metrics_fakes import fake_agent


def status(value, since):
    return {"event": "update_status_changed", "app_uuid": "a", "release": "r", "status": value,
            "since": since}  # fmt: skip


def test_events_become_counters_and_histograms():
    metrics = AgentMetrics(fake_agent())
    for event in (
        {"event": "target_fetched"},
        {"event": "poll_failed"},
        {"event": "poll_failed"},
        {"event": "report_failed"},
        {"event": "pull_started", "image": "i"},
        {"event": "download_progress", "image": "i", "bytes": 100},
        {"event": "download_progress", "image": "i", "bytes": 300},
        {"event": "pull_started", "image": "i"},  # a retry starts from zero again
        {"event": "download_progress", "image": "i", "bytes": 50},
        status("downloading", 10.0),
        status("applying changes", 20.0),
        status("done", 25.0),
        {"event": "lock_held", "app_id": 1},
        {"event": "lock_released", "app_id": 1},
        {"event": "something_else"},
    ):  # fmt: skip
        metrics.observe(event)
    text = metrics.render().decode()
    assert 'device_agent_poll_events_total{outcome="new_target"} 1.0' in text
    assert 'device_agent_poll_events_total{outcome="error"} 2.0' in text
    assert "device_agent_report_failures_total 1.0" in text
    assert "device_agent_download_bytes_total 350.0" in text
    assert "device_agent_apply_duration_seconds_sum 15.0" in text
    assert 'device_agent_apply_duration_seconds_bucket{le="15.0"} 1.0' in text
    assert "device_agent_lock_held_seconds_count 1.0" in text


def test_levels_are_read_at_scrape_time():
    text = AgentMetrics(fake_agent()).render().decode()
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
    # counting log events must not load prometheus_client (≈ 1 MB): only a scrape does
    code = (
        "import sys; from agent.api.metrics import AgentMetrics; m = AgentMetrics(None); "
        "m.observe({'event': 'target_fetched'}); "
        "m.observe({'event': 'update_status_changed', 'app_uuid': 'a', 'release': 'r', "
        "'status': 'done', 'since': 1.0}); print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
