"""Device status from the two links, with the rules of both product pages.

Pure: the agent derives its own view from its probes, the devcloud derives the cloud's view
from poll arrival times and its tunnel endpoint — both through `derive()`.

Current names (device-statuses-v2): Operational, Reduced Functionality (heartbeat only, or
cloudlink only), Disconnected, Configuring, Updating, Inactive (registered, never connected);
Post Provisioning belongs to the OS's provisioning and is never derived from the links. Older
names (v1): Online, Online (VPN only), Online (Heartbeat only), Offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeviceStatus(StrEnum):
    OPERATIONAL = "Operational"
    REDUCED_FUNCTIONALITY = "Reduced Functionality"
    DISCONNECTED = "Disconnected"
    CONFIGURING = "Configuring"
    UPDATING = "Updating"
    POST_PROVISIONING = "Post Provisioning"  # not booted from internal storage yet (OS side)
    INACTIVE = "Inactive"  # preregistered, never connected to the API


class LegacyStatus(StrEnum):
    ONLINE = "Online"
    VPN_ONLY = "Online (VPN only)"
    HEARTBEAT_ONLY = "Online (Heartbeat only)"
    OFFLINE = "Offline"
    CONFIGURING = "Configuring"
    UPDATING = "Updating"
    POST_PROVISIONING = "Post Provisioning"
    INACTIVE = "Inactive"


@dataclass(frozen=True)
class Links:
    heartbeat_ok: bool
    cloudlink_ok: bool
    cloudlink_enabled: bool = True  # a device with the VPN turned off is Operational on heartbeat
    updating: bool = False
    configuring: bool = False
    ever_online: bool = True  # False: provisioned, never seen yet
    heartbeat_detail: str = ""  # why the heartbeat is down, for the reason line
    cloudlink_detail: str = ""


@dataclass(frozen=True)
class StatusView:
    status: DeviceStatus
    legacy: LegacyStatus
    reason: str


def derive(links: Links) -> StatusView:
    heartbeat = links.heartbeat_ok
    # with cloudlink disabled, the heartbeat alone decides
    cloudlink = links.cloudlink_ok if links.cloudlink_enabled else heartbeat
    hb_why = f": {links.heartbeat_detail}" if links.heartbeat_detail else ""
    cl_why = f": {links.cloudlink_detail}" if links.cloudlink_detail else ""

    if not links.ever_online and not heartbeat and not links.cloudlink_ok:
        return StatusView(
            DeviceStatus.INACTIVE,
            LegacyStatus.INACTIVE,
            "registered, has not connected to the API yet",
        )
    if not heartbeat and not cloudlink:
        return StatusView(
            DeviceStatus.DISCONNECTED,
            LegacyStatus.OFFLINE,
            f"no heartbeat{hb_why}; cloudlink down{cl_why}",
        )
    if heartbeat and cloudlink:
        link_state = (
            "heartbeat and cloudlink up"
            if links.cloudlink_enabled
            else "heartbeat up (cloudlink disabled)"
        )
        status, legacy, reason = DeviceStatus.OPERATIONAL, LegacyStatus.ONLINE, link_state
    elif heartbeat:
        status, legacy = DeviceStatus.REDUCED_FUNCTIONALITY, LegacyStatus.HEARTBEAT_ONLY
        reason = (
            f"heartbeat only, cloudlink down{cl_why}: updates still arrive, but no SSH, "
            "terminal or remote actions"
        )
    else:
        status, legacy = DeviceStatus.REDUCED_FUNCTIONALITY, LegacyStatus.VPN_ONLY
        reason = (
            f"cloudlink only, no heartbeat{hb_why}: reachable over SSH, but no new releases "
            "or config arrive"
        )
    # an update or OS configuration in progress is what the dashboard shows — as long as the
    # heartbeat says so: without polls nobody knows the device is still updating
    if not heartbeat:
        return StatusView(status, legacy, reason)
    if links.configuring:
        return StatusView(
            DeviceStatus.CONFIGURING,
            LegacyStatus.CONFIGURING,
            f"applying OS configuration; {reason}",
        )
    if links.updating:
        return StatusView(
            DeviceStatus.UPDATING, LegacyStatus.UPDATING, f"updating to a new release; {reason}"
        )
    return StatusView(status, legacy, reason)
