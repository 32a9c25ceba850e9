import pytest

from agent.model.device_status import DeviceStatus as D
from agent.model.device_status import LegacyStatus as L
from agent.model.device_status import Links, derive


@pytest.mark.parametrize(
    ("hb", "cl", "enabled", "status", "legacy", "fragment"),
    [
        (True, True, True, D.OPERATIONAL, L.ONLINE, "heartbeat and cloudlink up"),
        (True, False, False, D.OPERATIONAL, L.ONLINE, "cloudlink disabled"),
        (True, False, True, D.REDUCED_FUNCTIONALITY, L.HEARTBEAT_ONLY, "heartbeat only"),
        (False, True, True, D.REDUCED_FUNCTIONALITY, L.VPN_ONLY, "cloudlink only"),
        (False, False, True, D.DISCONNECTED, L.OFFLINE, "no heartbeat"),
        (False, False, False, D.DISCONNECTED, L.OFFLINE, "no heartbeat"),
    ],
)
def test_both_product_pages(hb, cl, enabled, status, legacy, fragment):
    view = derive(Links(heartbeat_ok=hb, cloudlink_ok=cl, cloudlink_enabled=enabled))
    assert (view.status, view.legacy) == (status, legacy)
    assert fragment in view.reason


def test_reason_names_the_broken_link_and_why():
    view = derive(Links(True, False, cloudlink_detail="no WireGuard handshake for 312 s"))
    assert "cloudlink down: no WireGuard handshake for 312 s" in view.reason


def test_updating_and_configuring_show_while_connected_but_not_when_disconnected():
    assert derive(Links(True, True, updating=True)).status is D.UPDATING
    assert derive(Links(True, False, updating=True)).status is D.UPDATING
    assert "heartbeat only" in derive(Links(True, False, updating=True)).reason
    assert derive(Links(False, False, updating=True)).status is D.DISCONNECTED
    assert derive(Links(True, True, configuring=True, updating=True)).status is D.CONFIGURING


def test_never_seen_device_is_inactive():
    view = derive(Links(False, False, ever_online=False))
    assert (view.status, view.legacy) == (D.INACTIVE, L.INACTIVE)


def test_without_a_heartbeat_nobody_knows_it_is_still_updating():
    view = derive(Links(False, True, updating=True))
    assert (view.status, view.legacy) == (D.REDUCED_FUNCTIONALITY, L.VPN_ONLY)
