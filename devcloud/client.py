"""Tiny synchronous client for the devcloud admin API (stdlib only), for tests and the demo."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class DevCloudError(RuntimeError):
    """The admin API answered with an HTTP error."""

    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"{status} from {url}: {body}")
        self.status = status
        self.body = body
        self.url = url


class DevCloudClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_port_file(
        cls, path: str | Path, host: str = "127.0.0.1", timeout: float = 10.0
    ) -> DevCloudClient:
        port = int(Path(path).read_text().strip())
        return cls(f"http://{host}:{port}", timeout=timeout)

    # -- plumbing ---------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        url = self.base_url + path
        req = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise DevCloudError(exc.code, exc.read().decode(errors="replace"), url) from None
        return json.loads(raw) if raw else None

    def _json(self, method: str, path: str, data: Any) -> Any:
        return self._request(method, path, json.dumps(data).encode())

    @staticmethod
    def _q(uuid: str) -> str:
        return urllib.parse.quote(uuid, safe="")

    # -- admin API --------------------------------------------------------------------------
    def register(
        self,
        uuid: str,
        key: str,
        name: str | None = None,
        vpn: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add a device; `vpn` is `{"kind": "wireguard", "public_key", "keepalive_s"?}` or
        `{"kind": "openvpn", "common_name"}` (none: cloudlink disabled)."""
        data: dict[str, Any] = {"uuid": uuid, "api_key": key}
        if name is not None:
            data["name"] = name
        if vpn is not None:
            data["vpn"] = vpn
        result: dict[str, Any] = self._json("POST", "/admin/devices", data)
        return result

    def create_application(
        self, app_id: int, provisioning_key: str, name: str | None = None
    ) -> dict[str, Any]:
        """A fleet whose provisioning key lets devices register (POST /device/register)."""
        data: dict[str, Any] = {"id": app_id, "provisioning_key": provisioning_key}
        if name is not None:
            data["name"] = name
        result: dict[str, Any] = self._json("POST", "/admin/applications", data)
        return result

    def set_application_target(self, app_id: int, target: dict[str, Any]) -> None:
        """The fleet's release ({name, config, apps}): devices registering start with it."""
        self._json("PUT", f"/admin/applications/{app_id}/target", target)

    def applications(self) -> list[dict[str, Any]]:
        """[{id, name, devices: [uuid, …], registrations: [request body, …]}]"""
        result: list[dict[str, Any]] = self._request("GET", "/admin/applications")
        return result

    def devices(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/admin/devices")
        return result

    def set_target(self, uuid: str, target: dict[str, Any]) -> str:
        """Set the target ({name, config, apps}, no uuid wrapper); returns the new ETag."""
        result = self._json("PUT", f"/admin/devices/{self._q(uuid)}/target", target)
        return str(result["etag"])

    def set_raw_target(self, uuid: str, body: bytes | str | Any) -> str:
        """Serve `body` verbatim as the whole state document (bytes/str as given, anything
        else JSON-encoded); returns the ETag."""
        if isinstance(body, str):
            raw = body.encode()
        elif isinstance(body, bytes | bytearray):
            raw = bytes(body)
        else:
            raw = json.dumps(body).encode()
        path = f"/admin/devices/{self._q(uuid)}/target?raw=1"
        result = self._request("PUT", path, raw, content_type="application/octet-stream")
        return str(result["etag"])

    def connectivity(self, uuid: str) -> dict[str, Any]:
        """The cloud's view: {status, legacy_status, heartbeat, cloudlink, reason, …}."""
        result: dict[str, Any] = self.device(uuid)["connectivity"]
        return result

    def page(self) -> str:
        """The Devices page's HTML."""
        with urllib.request.urlopen(self.base_url + "/", timeout=self.timeout) as resp:
            return str(resp.read().decode())

    def device(self, uuid: str, since: float | None = None) -> dict[str, Any]:
        path = f"/admin/devices/{self._q(uuid)}"
        if since is not None:
            path += "?" + urllib.parse.urlencode({"since": repr(float(since))})
        result: dict[str, Any] = self._request("GET", path)
        return result

    def set_fault(
        self,
        uuid: str,
        mode: str | None,
        count: int | None = None,
        retry_after: int | None = None,
    ) -> dict[str, Any]:
        data = {"mode": mode, "count": count, "retry_after": retry_after}
        result: dict[str, Any] = self._json("POST", f"/admin/devices/{self._q(uuid)}/faults", data)
        return result

    def clear_fault(self, uuid: str) -> dict[str, Any]:
        return self.set_fault(uuid, None)

    def set_trickle(
        self, uuid: str | None, chunk_bytes: int | None, pause_ms: float = 0.0
    ) -> dict[str, Any] | None:
        """Send the answers of device `uuid` (None: of every device without its own setting)
        in pieces of `chunk_bytes` with `pause_ms` after each; `chunk_bytes=None` turns it
        off. Returns the setting now in force, as the cloud tells it."""
        data = None if chunk_bytes is None else {"chunk_bytes": chunk_bytes, "pause_ms": pause_ms}
        path = "/admin/trickle" if uuid is None else f"/admin/devices/{self._q(uuid)}/trickle"
        result: dict[str, Any] | None = self._json("PUT", path, data)["trickle"]
        return result

    def tags(self, uuid: str, set_to: dict[str, str] | None = None) -> dict[str, str]:
        """The device's tags; with `set_to`, set those first."""
        path = f"/admin/devices/{self._q(uuid)}/tags"
        if set_to is None:
            result: dict[str, str] = self._request("GET", path)
        else:
            result = self._json("PUT", path, set_to)
        return result

    def tag_requests(self, uuid: str) -> list[dict[str, str]]:
        """The bodies' entries for `uuid` of every `PATCH /device/v3/tags`, in order."""
        result: list[dict[str, str]] = self._request(
            "GET", f"/admin/devices/{self._q(uuid)}/tags?requests=1"
        )
        return result

    def clear_records(self, uuid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/admin/devices/{self._q(uuid)}/clear-records", b""
        )
        return result

    def logs(self, uuid: str) -> dict[str, Any]:
        """The device's log stream as received: {lines, received, requests, refused,
        raw_bytes, encodings} (devcloud/logs.py)."""
        result: dict[str, Any] = self._request("GET", f"/admin/devices/{self._q(uuid)}/logs")
        return result

    def cut_logs(self, uuid: str, cut: bool) -> None:
        """Refuse (and break) the device's log stream until called again with False."""
        self._json("PUT", f"/admin/devices/{self._q(uuid)}/logs/cut", {"cut": cut})
