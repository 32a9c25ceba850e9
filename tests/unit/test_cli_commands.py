from agent.cli_commands import render_status


def status(**apps_override):
    app = {
        "appId": 7,
        "appUuid": "a7",
        "name": "web",
        "release": "r2",
        "currentRelease": "r1",
        "updateStatus": "downloading",
        "since": 0,
        "sinceSeconds": 75.2,
        "reason": None,
        "services": [
            {
                "name": "main",
                "status": "Downloading",
                "image": "reg/main@sha256:1",
                "downloadProgress": 42,
            },
            {"name": "db", "status": "Running", "image": "reg/db:1", "downloadProgress": 100},
        ],
        **apps_override,
    }
    return {
        "status": "success",
        "device": {
            "uuid": "dev1",
            "name": "kiosk",
            "status": "Updating",
            "localMode": False,
            "converged": False,
            "heartbeat": {"lastPoll": 1.0, "ageSeconds": 12.0, "error": None},
            "report": {"last": None, "ageSeconds": None, "error": "HTTP 503"},
            "tunnel": {"enabled": True, "connected": False},
            "targetError": None,
            "configErrors": ["BALENA_SUPERVISOR_POLL_INTERVAL: bad"],
        },
        "apps": [app],
    }


def test_render_status():
    text = render_status(status())
    assert text.splitlines() == [
        "device dev1 (kiosk): Updating",
        "  heartbeat: last poll 12s ago",
        "  last report: never (error: HTTP 503)",
        "  tunnel: enabled, not connected",
        "  config error: BALENA_SUPERVISOR_POLL_INTERVAL: bad",
        "app web (id 7): release r2, downloading for 1m15s (running r1)",
        "  main  Downloading 42%  reg/main@sha256:1",
        "  db    Running  reg/db:1",
    ]


def test_render_status_reasons_and_no_apps():
    text = render_status(status(reason="waiting for an update lock", currentRelease="r2"))
    assert "  reason: waiting for an update lock" in text and "(running" not in text
    empty = status()
    empty["apps"] = []
    empty["device"]["localMode"] = True
    assert render_status(empty).splitlines()[0].endswith("[local mode]")
    assert render_status(empty).splitlines()[-1] == "no apps"


def test_render_status_update_window():
    reason = "waiting for the update window (next: Tue 02:00)"
    data = status(updateStatus="downloaded", reason=reason)
    data["device"]["updateWindow"] = {
        "setting": "Mon-Fri 02:00-04:00",
        "holding": True,
        "reason": reason,
        "nextOpen": 1.0,
        "nextOpenSeconds": 3600.0,
    }
    lines = render_status(data).splitlines()
    assert f"  update window: Mon-Fri 02:00-04:00 ({reason})" in lines
    assert "app web (id 7): release r2, downloaded for 1m15s (running r1)" in lines
    assert f"  reason: {reason}" in lines
    data["device"]["updateWindow"].update(holding=False, reason=None)
    assert "  update window: Mon-Fri 02:00-04:00 (open)" in render_status(data).splitlines()
