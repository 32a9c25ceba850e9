"""The cloud's view of each device's two links, judged with the agent's own rules
(`agent.model.device_status.derive`):

- heartbeat: the last successful target-state poll (200 or 304) is younger than the device's poll
  interval times HEARTBEAT_JITTER_FACTOR (the agent waits interval + jitter between polls; the
  balena API allows 1.5 intervals for the same reason). The interval is the target's
  `BALENA_SUPERVISOR_POLL_INTERVAL` (else `RESIN_…`), else `--poll-interval-ms`, else 900000.
- cloudlink, WireGuard: the peer's latest handshake is younger than 180 s + its keepalive and its
  rx counter moved within max(3 s, 3 × keepalive); OpenVPN: the device's common name is in the
  server's status file, and that file was written within the last OPENVPN_FRESH_S.

A background task samples the tunnel endpoints and derives every device's status each second;
each change — noticed by that task or by a request — is kept (the device's status history) and
logged as `device_status_changed uuid=… status="…" legacy="…" reason="…"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.model.device_status import Links, StatusView, derive
from devcloud.state import UPDATE_STATUSES, Cloud, Device
from devcloud.tunnels import OpenVpnWatch, WireGuardWatch

log = logging.getLogger("devcloud")

DEFAULT_POLL_INTERVAL_MS = 900_000
HEARTBEAT_JITTER_FACTOR = 1.5
HANDSHAKE_TIMEOUT_S = 180.0  # WireGuard's REJECT_AFTER_TIME
OPENVPN_FRESH_S = 5.0
SAMPLE_EVERY_S = 1.0
UPDATING = frozenset({"downloading", "downloaded", "applying changes"})


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _secs(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


@dataclass(frozen=True)
class Cloudlink:
    ok: bool
    enabled: bool
    kind: str | None
    last_handshake: float | None = None
    detail: str = ""
    traffic_seen: bool = False


@dataclass(frozen=True)
class DeviceConnectivity:
    view: StatusView
    heartbeat_ok: bool
    heartbeat_last: float | None
    interval_ms: int
    cloudlink: Cloudlink
    update_status: str | None  # the device's, by balena's precedence over its apps
    update_since: float | None  # time of the latest update status change
    since: float  # when the current status began (first derived)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.view.status),
            "legacy_status": str(self.view.legacy),
            "heartbeat": {
                "ok": self.heartbeat_ok,
                "last": iso(self.heartbeat_last),
                "interval_ms": self.interval_ms,
            },
            "cloudlink": {
                "ok": self.cloudlink.ok,
                "enabled": self.cloudlink.enabled,
                "kind": self.cloudlink.kind,
                "last_handshake": iso(self.cloudlink.last_handshake),
            },
            "reason": self.view.reason,
            "since": iso(self.since),
            "update_status": self.update_status,
            "update_status_since": iso(self.update_since),
        }


@dataclass(frozen=True)
class StatusChange:
    t: float
    uuid: str
    status: str
    legacy_status: str
    reason: str

    @property
    def key(self) -> tuple[str, str]:
        return self.status, self.legacy_status


def update_status(device: Device) -> tuple[str | None, float | None]:
    """The device's update status (its apps' by UPDATE_STATUSES precedence) and the time of
    its latest change (the "update status duration" starts there)."""
    entries = list(device.apps_update_status.values())
    if not entries:
        return None, None
    status = min((e.status for e in entries), key=UPDATE_STATUSES.index)
    return status, max(e.since for e in entries)


class Connectivity:
    """Tunnel watchers plus the per-device judgement; `clock` is injectable for tests."""

    def __init__(
        self,
        cloud: Cloud,
        *,
        wg_interface: str | None = None,
        openvpn_status: Path | None = None,
        poll_interval_ms: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cloud = cloud
        self.wg = WireGuardWatch(wg_interface) if wg_interface else None
        self.ovpn = OpenVpnWatch(openvpn_status) if openvpn_status is not None else None
        self.default_interval_ms = poll_interval_ms or DEFAULT_POLL_INTERVAL_MS
        self.clock = clock
        self.changes: list[StatusChange] = []
        self._current: dict[str, StatusChange] = {}
        self._seen: set[str] = set()  # devices ever online (a poll or tunnel traffic)

    def interval_ms(self, device: Device) -> int:
        return device.config_poll_interval_ms() or self.default_interval_ms

    # -- the two links --------------------------------------------------------------------
    def _heartbeat(self, device: Device, now: float) -> tuple[bool, str]:
        last = device.last_ok_poll
        if last is None:
            return False, "no successful poll yet"
        interval = self.interval_ms(device) / 1000
        age = max(0.0, now - last)
        if age < interval * HEARTBEAT_JITTER_FACTOR:
            return True, ""
        return False, f"last poll {_secs(age)} ago, poll interval {_secs(interval)}"

    def cloudlink(self, device: Device, now: float) -> Cloudlink:
        vpn = device.vpn
        if vpn is None:
            return Cloudlink(False, False, None, detail="cloudlink disabled")
        if vpn.kind == "openvpn":
            return self._openvpn(vpn.common_name or "", now)
        return self._wireguard(vpn.public_key or "", vpn.keepalive_s, now)

    def _wireguard(self, key: str, keepalive: int, now: float) -> Cloudlink:
        wg = self.wg
        if wg is None:
            return Cloudlink(False, True, "wireguard", detail="devcloud has no --wg-interface")
        if wg.sampled_at is None or now - wg.sampled_at > 5 * SAMPLE_EVERY_S:
            why = wg.error or "no sample yet"
            return Cloudlink(False, True, "wireguard", detail=f"{wg.iface}: {why}")
        track = wg.peers.get(key)
        if track is None:
            return Cloudlink(False, True, "wireguard", detail=f"peer not configured on {wg.iface}")
        handshake = track.peer.latest_handshake
        seen = handshake is not None or track.peer.rx_bytes > 0

        def down(detail: str) -> Cloudlink:
            return Cloudlink(False, True, "wireguard", handshake, detail, seen)

        if handshake is None:
            return down("no WireGuard handshake yet")
        age = max(0.0, now - handshake)
        if age > HANDSHAKE_TIMEOUT_S + keepalive:
            return down(f"no WireGuard handshake for {_secs(age)}")
        if keepalive:
            quiet = now - track.rx_moved_at if track.rx_moved_at is not None else None
            window = max(3.0, 3.0 * keepalive)
            if quiet is None or quiet > window:
                idle = "ever" if quiet is None else f"{_secs(quiet)}"
                return down(f"no WireGuard traffic from the peer for {idle}")
        return Cloudlink(True, True, "wireguard", handshake, "", seen)

    def _openvpn(self, common_name: str, now: float) -> Cloudlink:
        ovpn = self.ovpn
        if ovpn is None:
            return Cloudlink(False, True, "openvpn", detail="devcloud has no --openvpn-status")
        seen = common_name in ovpn.ever_listed
        age = ovpn.age(now)
        if age is None:
            why = ovpn.error or "no status file yet"
            return Cloudlink(False, True, "openvpn", detail=why, traffic_seen=seen)
        if age > OPENVPN_FRESH_S:
            detail = f"OpenVPN status file not updated for {_secs(age)}"
            return Cloudlink(False, True, "openvpn", detail=detail, traffic_seen=seen)
        client = ovpn.status.clients.get(common_name)
        if client is None:
            detail = f"{common_name} not connected to the OpenVPN server"
            return Cloudlink(False, True, "openvpn", detail=detail, traffic_seen=seen)
        return Cloudlink(True, True, "openvpn", client.connected_since, "", True)

    # -- the device's status --------------------------------------------------------------
    def of(self, device: Device, now: float | None = None) -> DeviceConnectivity:
        now = self.clock() if now is None else now
        heartbeat_ok, heartbeat_detail = self._heartbeat(device, now)
        link = self.cloudlink(device, now)
        status, since = update_status(device)
        if device.last_poll is not None or link.traffic_seen:
            self._seen.add(device.uuid)
        links = Links(
            heartbeat_ok=heartbeat_ok,
            cloudlink_ok=link.ok,
            cloudlink_enabled=link.enabled,
            updating=status in UPDATING,
            ever_online=device.uuid in self._seen,
            heartbeat_detail=heartbeat_detail,
            cloudlink_detail=link.detail,
        )
        view = derive(links)
        return DeviceConnectivity(
            view=view,
            heartbeat_ok=heartbeat_ok,
            heartbeat_last=device.last_ok_poll,
            interval_ms=self.interval_ms(device),
            cloudlink=link,
            update_status=status,
            update_since=since,
            since=self._record(device.uuid, view, now).t,
        )

    def _record(self, uuid: str, view: StatusView, now: float) -> StatusChange:
        """The device's current status entry; a new one (kept and logged) when it changed.
        Every view served goes through here, so the history matches what anyone saw."""
        old = self._current.get(uuid)
        if old is not None and old.key == (view.status, view.legacy):
            return old
        change = StatusChange(now, uuid, str(view.status), str(view.legacy), view.reason)
        self._current[uuid] = change
        self.changes.append(change)
        log.info(
            "device_status_changed uuid=%s status=%s legacy=%s reason=%s",
            uuid,
            json.dumps(change.status),
            json.dumps(change.legacy_status),
            json.dumps(change.reason),
        )
        return change

    def history(self, uuid: str, since: float | None = None) -> list[dict[str, Any]]:
        return [
            {"t": c.t, "status": c.status, "legacy_status": c.legacy_status, "reason": c.reason}
            for c in self.changes
            if c.uuid == uuid and (since is None or c.t > since)
        ]

    def check(self, now: float | None = None) -> list[StatusChange]:
        """Derive every device's status; the changes (recorded and logged)."""
        now = self.clock() if now is None else now
        before = len(self.changes)
        for device in list(self.cloud.devices.values()):
            self.of(device, now)
        return self.changes[before:]

    async def sample(self) -> None:
        now = self.clock()
        if self.wg is not None:
            await self.wg.sample(now)
        if self.ovpn is not None:
            self.ovpn.read()

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
                self.check()
            except Exception:  # keep watching; one bad sample must not stop the task
                log.exception("connectivity sample failed")
            await asyncio.sleep(SAMPLE_EVERY_S)


CONNECTIVITY_KEY = web.AppKey("devcloud_connectivity", Connectivity)


def install(app: web.Application, connectivity: Connectivity) -> None:
    """Keep the background sampler running for the app's lifetime."""
    app[CONNECTIVITY_KEY] = connectivity

    async def sampler(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(connectivity.run(), name="devcloud-connectivity")
        yield
        # cancel until it ends: Python 3.11's wait_for swallows a cancel that lands as its
        # inner await finishes, and one swallowed cancel would hang the server's shutdown
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampler)
