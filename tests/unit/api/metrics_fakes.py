"""The API context as the metrics endpoint reads it: one app downloading behind a lock, a cloudlink
without a handshake, a closed update window."""

import time
from types import SimpleNamespace

from agent.connectivity.cloudlink import VpnKind
from agent.connectivity.monitor import CloudlinkView, ConnectivityView
from agent.model import UpdateStatus
from agent.model.device_status import Links, derive
from agent.reconcile.window_gate import Verdict
from agent.status.board import AppView, ServiceView


def fake_agent():
    app = AppView(
        app_uuid="a1",
        app_id=1,
        name="web",
        release_uuid="r2",
        current_release_uuid="r1",
        update_status=UpdateStatus.DOWNLOADING,
        since=0.0,
        services={"main": ServiceView("img", "Downloading", 40)},
    )
    plan = SimpleNamespace(apps={"a1": SimpleNamespace(blocked_by_lock=True, held=True)})
    view = ConnectivityView(
        derive(Links(heartbeat_ok=True, cloudlink_ok=False, cloudlink_detail="no handshake")),
        True,
        5.0,
        "last poll 1 s ago",
        CloudlinkView(True, VpnKind.WIREGUARD, False, 1.0, "no handshake"),
        6.0,
    )
    return SimpleNamespace(
        status=SimpleNamespace(apps={"a1": app}, last_poll=None, last_report=1.0),
        apply=SimpleNamespace(
            last_plan=plan,
            converged=SimpleNamespace(is_set=lambda: False),
            window=Verdict(hold="waiting for the update window", next_open=time.time() + 3600),
        ),
        poller=SimpleNamespace(polls=7),
        reporter=SimpleNamespace(reports_sent=3),
        connectivity=SimpleNamespace(view=view),
        targets=SimpleNamespace(local_mode=False),
    )
