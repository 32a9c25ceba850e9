"""Link state and events with the standard library; pyroute2's WireGuard module alone."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from pathlib import Path

from agent.connectivity.netlink import (
    RTM_DELLINK,
    RTM_NEWLINK,
    link_up,
    parse_link_messages,
)

REPO = Path(__file__).resolve().parents[3]


def link_message(kind: int, name: str | None, extra_attr: bool = True) -> bytes:
    attrs = b""
    if extra_attr:  # IFLA_MTU before the name: attributes are walked, not assumed first
        attrs += struct.pack("=HHI", 8, 4, 1420)
    if name is not None:
        raw = name.encode() + b"\0"
        attrs += struct.pack("=HH", 4 + len(raw), 3) + raw + b"\0" * (-len(raw) % 4)
    body = struct.pack("=BxHiII", 0, 1, 7, 0x1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_parse_link_messages_names_each_link_event_and_skips_the_rest():
    other = struct.pack("=IHHII", 20, 24, 0, 0, 0) + b"\0" * 4  # RTM_NEWROUTE: not a link
    data = link_message(RTM_NEWLINK, "wg0") + other + link_message(RTM_DELLINK, "tun0", False)
    assert list(parse_link_messages(data)) == [("RTM_NEWLINK", "wg0"), ("RTM_DELLINK", "tun0")]
    assert list(parse_link_messages(link_message(RTM_NEWLINK, None))) == [("RTM_NEWLINK", None)]


def test_parse_link_messages_stops_at_a_truncated_message():
    whole = link_message(RTM_NEWLINK, "wg0")
    assert list(parse_link_messages(whole + whole[:20])) == [("RTM_NEWLINK", "wg0")]
    assert list(parse_link_messages(whole[:-4])) == []
    assert list(parse_link_messages(b"\0" * 16)) == []  # a zero length never loops


def test_link_up_reads_this_namespaces_links():
    assert link_up("lo") == (True, True)
    assert link_up("notthere0") == (False, False)
    assert link_up("x" * 40) == (False, False)


def run_in_new_netns(code: str) -> str:
    out = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_link_events_and_state_follow_a_link_added_raised_and_removed():
    """In a network namespace of its own (root): a veth pair comes, goes up, goes away."""
    out = run_in_new_netns(
        """
        import subprocess, threading, time
        from agent.connectivity.netlink import link_events, link_up
        stop, seen = threading.Event(), []
        def watch():
            for event in link_events(stop, 0.2):
                seen.append(event)
        t = threading.Thread(target=watch)
        t.start()
        time.sleep(0.3)
        ip = lambda *a: subprocess.run(["ip", "link", *a], check=True)
        ip("add", "tst0", "type", "veth", "peer", "name", "tst1")
        states = [link_up("tst0")]
        ip("set", "tst0", "up")
        states.append(link_up("tst0"))
        ip("del", "tst0")
        states.append(link_up("tst0"))
        time.sleep(0.5)
        stop.set()
        t.join(5)
        print(states)
        print(sorted({e for e in seen if e[1] == "tst0"}))
        print(t.is_alive())
        """
    )
    states, events, alive = out.splitlines()
    assert states == "[(True, False), (True, True), (False, False)]"
    assert events == "[('RTM_DELLINK', 'tst0'), ('RTM_NEWLINK', 'tst0')]"
    assert alive == "False"  # the watcher ends on `stop`, without a last event


def test_wireguard_module_loads_alone_and_pyroute2_stays_whole_for_others():
    code = """
    import sys
    from agent.connectivity.netlink import _pyroute2_module
    part = _pyroute2_module("pyroute2.netlink.generic.wireguard")
    alone = sorted(m for m in sys.modules if m.startswith("pyroute2"))
    from pyroute2 import IPRoute, WireGuard
    import pyroute2
    print(len(alone), "pyroute2.iproute" in alone, "pyroute2.ndb" in alone)
    print(WireGuard is part.WireGuard, hasattr(pyroute2, "NDB"), IPRoute.__name__)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    count, iproute, ndb = out[0].split()
    assert int(count) < 30 and iproute == "False" and ndb == "False"  # of pyroute2's ≈ 160
    assert out[1] == "True True IPRoute"
