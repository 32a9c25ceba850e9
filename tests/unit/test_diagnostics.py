from agent.diagnostics import Check, render_text, verdict

OK_NET = [
    Check("dns", True, "api → 10.0.0.1"),
    Check("tcp", True, "TCP to api:80 ok"),
    Check("heartbeat", True, "last successful poll 12 s ago"),
]


def wg(ok, detail):
    return Check("cloudlink", ok, detail, {"enabled": True, "kind": "wireguard"})


def test_cloudlink_down_names_the_cause():
    line = verdict([*OK_NET, wg(False, "no WireGuard handshake for 312 s")])
    assert line == (
        "heartbeat OK, cloudlink DOWN: no WireGuard handshake for 312 s — "
        "UDP to the endpoint blocked?"
    )


def test_all_good():
    assert verdict([*OK_NET, wg(True, "WireGuard handshake 20 s ago")]) == (
        "heartbeat OK, cloudlink OK: all checks passed"
    )


def test_dns_failure_is_named_first():
    checks = [
        Check("dns", False, "cannot resolve api.example: Name or service not known"),
        Check("tcp", False, "TCP to api.example:443: refused"),
        wg(False, "no WireGuard handshake for 999 s"),
    ]
    line = verdict(checks)
    assert line.startswith("heartbeat DOWN, cloudlink DOWN: cannot resolve api.example")
    assert "DNS broken" in line


def test_engine_clock_and_disk_problems_are_listed():
    checks = [
        *OK_NET,
        Check("cloudlink", True, "disabled", {"enabled": False}),
        Check("clock", False, "local clock is +95 s off the API's"),
        Check("engine", False, "engine not reachable"),
        Check("disk-engine", False, "12 MiB free for images in /var/lib/docker"),
    ]
    line = verdict(checks)
    assert line.startswith("heartbeat OK, cloudlink disabled:")
    assert "NTP" in line and "engine DOWN" in line and "low disk" in line
    assert render_text(checks).splitlines()[-1] == line
