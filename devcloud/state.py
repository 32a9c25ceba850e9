"""In-memory model of the devcloud: devices, their target documents and what they told us.

Everything here is plain data plus the bookkeeping rules (ETag, deep merge of reports, update
status tracking). No I/O and no asyncio: the HTTP layer lives in :mod:`devcloud.server`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Wire values of `update_status`, in the order the balena API ranks them when one app reports
# several releases (lower index wins), see open-balena-api state-patch-v3.
UPDATE_STATUSES: tuple[str, ...] = (
    "rejected",
    "aborted",
    "downloading",
    "downloaded",
    "applying changes",
    "done",
)

FAULT_MODES: tuple[str, ...] = (
    "500",
    "503_retry_after",
    "timeout",
    "close",
    "garbage",
    "not_target",
)

DEFAULT_RETRY_AFTER = 5
DEFAULT_KEEPALIVE_S = 25  # WireGuard persistent keepalive assumed when a device doesn't say
VPN_KINDS = ("wireguard", "openvpn")


class ReportError(ValueError):
    """A current-state report that is not shaped like balena's v3 PATCH body."""


def canonical_json(value: Any) -> bytes:
    """The byte form we serve and hash: sorted keys, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def etag_for(body: bytes) -> str:
    """A strong, quoted ETag for a served body."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    """Merge `src` into `dst` in place: dicts merge recursively, any other value replaces."""
    for key, value in src.items():
        old = dst.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            deep_merge(old, value)
        else:
            dst[key] = copy.deepcopy(value)


@dataclass
class Poll:
    t: float
    status: int  # HTTP status answered, 0 when the connection was closed / held without answer


@dataclass
class Report:
    t: float
    body: dict[str, Any]  # that device's part of the PATCH body, without the uuid wrapper


@dataclass
class AppUpdateStatus:
    release_uuid: str
    status: str
    since: float


@dataclass
class UpdateStatusEvent:
    t: float
    app_uuid: str
    release_uuid: str
    status: str


@dataclass
class Fault:
    mode: str
    count: int | None = None  # faulted polls left; None = until cleared
    retry_after: int | None = None  # seconds, for "503_retry_after"


@dataclass(frozen=True)
class Vpn:
    """How a device reaches cloudlink: its WireGuard key or its OpenVPN certificate's CN."""

    kind: str  # wireguard | openvpn
    public_key: str | None = None
    common_name: str | None = None
    keepalive_s: int = DEFAULT_KEEPALIVE_S

    @classmethod
    def from_json(cls, data: Any) -> Vpn:
        """`{"kind": "wireguard", "public_key", "keepalive_s"?}` or `{"kind": "openvpn",
        "common_name"}`; ValueError says what is wrong."""
        if not isinstance(data, dict) or data.get("kind") not in VPN_KINDS:
            raise ValueError(f"vpn must be null or an object with kind in {VPN_KINDS}")
        keepalive = data.get("keepalive_s", DEFAULT_KEEPALIVE_S)
        if isinstance(keepalive, bool) or not isinstance(keepalive, int) or keepalive < 0:
            raise ValueError("vpn.keepalive_s must be an integer >= 0")
        field_name = "public_key" if data["kind"] == "wireguard" else "common_name"
        value = data.get(field_name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"vpn.{field_name} must be a non-empty string")
        return cls(kind=data["kind"], keepalive_s=keepalive, **{field_name: value})

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Trickle:
    """Send answer bodies `chunk_bytes` at a time with `pause_ms` between pieces (chunked
    transfer encoding): a slow or TLS link, where a body never arrives in one piece."""

    chunk_bytes: int
    pause_ms: float = 0.0

    MAX_PAUSE_MS = 10_000.0

    @classmethod
    def from_json(cls, data: Any) -> Trickle | None:
        """`{"chunk_bytes": int >= 1, "pause_ms"?: number >= 0}` or null (off); ValueError
        says what is wrong."""
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ValueError("trickle must be null or an object {chunk_bytes, pause_ms}")
        chunk = data.get("chunk_bytes")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError("trickle.chunk_bytes must be an integer >= 1")
        pause = data.get("pause_ms", 0)
        if (
            isinstance(pause, bool)
            or not isinstance(pause, int | float)
            or not 0 <= pause <= cls.MAX_PAUSE_MS
        ):
            raise ValueError(f"trickle.pause_ms must be a number in 0..{cls.MAX_PAUSE_MS:g}")
        return cls(chunk, float(pause))

    def to_json(self) -> dict[str, Any]:
        return {"chunk_bytes": self.chunk_bytes, "pause_ms": self.pause_ms}


@dataclass
class Device:
    uuid: str
    api_key: str
    name: str
    target: dict[str, Any] | None = None  # {name, config, apps}; None = empty default target
    raw_target: bytes | None = None  # served verbatim as the whole document when set
    polls: list[Poll] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    current: dict[str, Any] = field(default_factory=dict)
    apps_update_status: dict[str, AppUpdateStatus] = field(default_factory=dict)
    update_status_history: list[UpdateStatusEvent] = field(default_factory=list)
    fault: Fault | None = None
    vpn: Vpn | None = None
    trickle: Trickle | None = None  # how this device's answers are sent (None: the cloud's)

    # -- target document ------------------------------------------------------------------
    def document(self) -> bytes:
        """The exact body of `GET /device/v3/{uuid}/state`."""
        if self.raw_target is not None:
            return self.raw_target
        target = self.target
        if target is None:
            target = {"name": self.name, "config": {}, "apps": {}}
        return canonical_json({self.uuid: target})

    @property
    def etag(self) -> str:
        return etag_for(self.document())

    @property
    def last_poll(self) -> float | None:
        """Time of the last authenticated poll (what balena counts as the API heartbeat)."""
        for poll in reversed(self.polls):
            if poll.status != 401:
                return poll.t
        return None

    @property
    def last_ok_poll(self) -> float | None:
        """Time of the last poll the cloud answered with the target (200) or 304."""
        for poll in reversed(self.polls):
            if poll.status in (200, 304):
                return poll.t
        return None

    def config_poll_interval_ms(self) -> int | None:
        """`BALENA_SUPERVISOR_POLL_INTERVAL` (else `RESIN_…`) of the target's config, as the
        agent reads it (an integer >= 1000 ms); None when absent or invalid."""
        config = (self.target or {}).get("config")
        if not isinstance(config, dict):
            return None
        for name in ("BALENA_SUPERVISOR_POLL_INTERVAL", "RESIN_SUPERVISOR_POLL_INTERVAL"):
            raw = config.get(name)
            if raw is None:
                continue
            try:
                value = int(str(raw).strip())
            except ValueError:
                return None
            return value if value >= 1000 else None
        return None

    # -- faults -----------------------------------------------------------------------------
    def take_fault(self) -> Fault | None:
        """The fault to apply to this poll (if any), consuming one of its remaining count."""
        fault = self.fault
        if fault is None:
            return None
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.fault = None
        return Fault(fault.mode, fault.count, fault.retry_after)

    # -- reports ----------------------------------------------------------------------------
    def apply_report(self, body: dict[str, Any], t: float) -> None:
        """Record one (already validated) report and track update status changes."""
        self.reports.append(Report(t=t, body=copy.deepcopy(body)))
        deep_merge(self.current, body)
        apps = body.get("apps")
        if not isinstance(apps, dict):
            return
        for app_uuid, app in apps.items():
            picked = _app_update_status(app)
            if picked is None:
                continue
            release_uuid, status = picked
            stored = self.apps_update_status.get(app_uuid)
            if stored is not None and (stored.release_uuid, stored.status) == picked:
                continue
            self.apps_update_status[app_uuid] = AppUpdateStatus(release_uuid, status, since=t)
            self.update_status_history.append(
                UpdateStatusEvent(t=t, app_uuid=app_uuid, release_uuid=release_uuid, status=status)
            )

    def clear_records(self) -> None:
        self.polls.clear()
        self.reports.clear()
        self.update_status_history.clear()

    # -- views ------------------------------------------------------------------------------
    def view(self, since: float | None = None) -> dict[str, Any]:
        """The admin JSON view; `since` keeps only polls/reports/history with t > since."""

        def keep(t: float) -> bool:
            return since is None or t > since

        raw_text = None
        if self.raw_target is not None:
            raw_text = self.raw_target.decode("utf-8", errors="replace")
        return {
            "uuid": self.uuid,
            "name": self.name,
            "target": copy.deepcopy(self.target) if self.raw_target is None else None,
            "raw_target": raw_text,
            "etag": self.etag,
            "polls": [asdict(p) for p in self.polls if keep(p.t)],
            "reports": [asdict(r) for r in self.reports if keep(r.t)],
            "current": copy.deepcopy(self.current),
            "apps_update_status": {k: asdict(v) for k, v in self.apps_update_status.items()},
            "update_status_history": [asdict(e) for e in self.update_status_history if keep(e.t)],
            "last_poll": self.last_poll,
            "fault": asdict(self.fault) if self.fault is not None else None,
            "vpn": self.vpn.to_json() if self.vpn is not None else None,
            "trickle": self.trickle.to_json() if self.trickle is not None else None,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "etag": self.etag,
            "polls": len(self.polls),
            "reports": len(self.reports),
            "last_poll": self.last_poll,
            "apps_update_status": {k: asdict(v) for k, v in self.apps_update_status.items()},
            "fault": asdict(self.fault) if self.fault is not None else None,
        }


def _app_update_status(app: Any) -> tuple[str, str] | None:
    """(release_uuid, update_status) an app entry of a report announces, if any.

    With several releases carrying a status, the one ranked first in UPDATE_STATUSES wins
    (as the balena API does); ties go to the first in report order.
    """
    if not isinstance(app, dict):
        return None
    releases = app.get("releases")
    if not isinstance(releases, dict):
        return None
    best: tuple[str, str] | None = None
    for release_uuid, release in releases.items():
        if not isinstance(release, dict):
            continue
        status = release.get("update_status")
        if not isinstance(status, str):
            continue
        if best is None or UPDATE_STATUSES.index(status) < UPDATE_STATUSES.index(best[1]):
            best = (release_uuid, status)
    return best


def validate_report(uuid: str, body: Any) -> None:
    """Raise ReportError unless `body` (one device's part of a PATCH) is well formed."""
    if not isinstance(body, dict):
        raise ReportError(f"{uuid}: state must be an object")
    apps = body.get("apps")
    if apps is None:
        return
    if not isinstance(apps, dict):
        raise ReportError(f"{uuid}: apps must be an object")
    for app_uuid, app in apps.items():
        if not isinstance(app, dict):
            raise ReportError(f"{uuid}: apps.{app_uuid} must be an object")
        releases = app.get("releases")
        if releases is None:
            continue
        if not isinstance(releases, dict):
            raise ReportError(f"{uuid}: apps.{app_uuid}.releases must be an object")
        for release_uuid, release in releases.items():
            where = f"{uuid}: apps.{app_uuid}.releases.{release_uuid}"
            if not isinstance(release, dict):
                raise ReportError(f"{where} must be an object")
            status = release.get("update_status")
            if status is not None and status not in UPDATE_STATUSES:
                raise ReportError(f"{where}.update_status: unknown value {status!r}")


@dataclass
class Cloud:
    """All devices the cloud knows, by uuid."""

    devices: dict[str, Device] = field(default_factory=dict)
    trickle: Trickle | None = None  # for devices without their own setting

    def trickle_for(self, device: Device | None) -> Trickle | None:
        if device is not None and device.trickle is not None:
            return device.trickle
        return self.trickle

    def register(
        self, uuid: str, api_key: str, name: str | None = None, vpn: Vpn | None = None
    ) -> Device:
        """Add a device, or replace the key (and name and vpn, if given) of a known one."""
        device = self.devices.get(uuid)
        if device is None:
            device = Device(uuid=uuid, api_key=api_key, name=name or uuid, vpn=vpn)
            self.devices[uuid] = device
        else:
            device.api_key = api_key
            if name is not None:
                device.name = name
            if vpn is not None:
                device.vpn = vpn
        return device

    def get(self, uuid: str) -> Device | None:
        return self.devices.get(uuid)

    def authenticate(self, uuid: str, token: str | None) -> Device | None:
        """The device if `token` is its api key, else None (unknown uuids look the same)."""
        device = self.devices.get(uuid)
        if device is None or token is None or token != device.api_key:
            return None
        return device

    def set_target(self, uuid: str, target: dict[str, Any]) -> str:
        device = self.devices[uuid]
        device.target = copy.deepcopy(target)
        device.raw_target = None
        return device.etag

    def set_raw_target(self, uuid: str, raw: bytes) -> str:
        device = self.devices[uuid]
        device.raw_target = bytes(raw)
        return device.etag

    def record_poll(self, device: Device, status: int, t: float | None = None) -> None:
        device.polls.append(Poll(t=time.time() if t is None else t, status=status))
