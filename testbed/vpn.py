"""Real cloudlink tunnels across a NetLab: WireGuard (wireguard-go on both ends) and OpenVPN
(server in the cloud namespace, client with a management interface in the device namespace).
Each registers its `stop()` with the lab, so `lab.stop()` ends it too."""

from __future__ import annotations

import functools
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from devcloud.tunnels import WgPeer, parse_wg_dump

from ._util import TestbedError, find_binary, wait_for
from .pki import make_pki

if TYPE_CHECKING:
    from .netns import NetLab

UAPI_DIR = Path("/var/run/wireguard")
WG_PORT = 51820
OPENVPN_PORT = 1194
MANAGEMENT_PORT = 7505  # on the device namespace's own loopback


def _wait(what: str, timeout: float, check: Callable[[], object], why: Callable[[], str]) -> None:
    """wait_for, with `why()` (a log tail) in the error."""
    try:
        wait_for(what, timeout, check)
    except TestbedError as exc:
        raise TestbedError(f"{exc}\n{why()}") from None


class _Link:
    """What both tunnels share: names and addresses from the lab, processes to end."""

    def __init__(self, lab: NetLab, prefix: str, net: int, port: int) -> None:
        self.lab = lab
        self.cloud_iface, self.device_iface = f"{prefix}c{lab.id}", f"{prefix}d{lab.id}"
        self.cloud_port = port
        self.cloud_tunnel_ip = f"10.{net}.{lab.subnet}.1"
        self.device_tunnel_ip = f"10.{net}.{lab.subnet}.2"
        self._procs: list[subprocess.Popen[bytes]] = []
        lab.on_stop(self.stop)

    def stop(self) -> None:
        while self._procs:
            self.lab.end(self._procs.pop())


class WireGuardLink(_Link):
    """wireguard-go in both namespaces: the cloud end listens on cloud_ip:cloud_port, the device
    end has that endpoint and a persistent keepalive (`keepalive_s`). The cloud end sends no
    keepalives (the usual server setup) unless `cloud_keepalive_s` is set. Up (handshake seen)
    when constructed, unless `wait=False`."""

    def __init__(
        self,
        lab: NetLab,
        keepalive_s: int = 1,
        *,
        cloud_keepalive_s: int = 0,
        wait: bool = True,
        timeout: float = 15.0,
    ) -> None:
        self._wg_go = find_binary("wireguard-go", "wireguard-go")
        self._wg = find_binary("wg", "wireguard-tools")
        super().__init__(lab, "wg", 232, WG_PORT)
        self.keepalive_s = keepalive_s
        self.cloud_keepalive_s = cloud_keepalive_s
        try:
            cloud_key, self.cloud_public_key = self._keypair("cloud")
            device_key, self.device_public_key = self._keypair("device")
            self._start(cloud_key, device_key)
            if wait:
                self.wait_handshake(timeout)
        except BaseException:
            self.stop()
            raise

    def _keypair(self, side: str) -> tuple[Path, str]:
        private = subprocess.run(
            [self._wg, "genkey"], capture_output=True, text=True, check=True
        ).stdout.strip()
        public = subprocess.run(
            [self._wg, "pubkey"], input=private, capture_output=True, text=True, check=True
        ).stdout.strip()
        path = self.lab.root / f"wg-{side}.key"
        path.touch(mode=0o600)
        path.write_text(private + "\n")
        return path, public

    def _start(self, cloud_key: Path, device_key: Path) -> None:
        lab, wg = self.lab, self._wg
        for side, iface in (("cloud", self.cloud_iface), ("device", self.device_iface)):
            self._procs.append(lab.spawn(side, [self._wg_go, "-f", iface], f"wireguard-{side}"))
        for side, iface in (("cloud", self.cloud_iface), ("device", self.device_iface)):
            sock = UAPI_DIR / f"{iface}.sock"
            why = functools.partial(lab.log_tail, f"wireguard-{side}")
            _wait(f"{sock}", 10.0, sock.exists, why)
        lab.run("cloud", [wg, "set", self.cloud_iface, "listen-port", str(self.cloud_port),
                          "private-key", str(cloud_key), "peer", self.device_public_key,
                          "allowed-ips", f"{self.device_tunnel_ip}/32",
                          # 0 = off: the device sees nothing arrive from an idle server
                          "persistent-keepalive", str(self.cloud_keepalive_s)])  # fmt: skip
        lab.run("device", [wg, "set", self.device_iface, "private-key", str(device_key),
                           "peer", self.cloud_public_key,
                           "allowed-ips", f"{self.cloud_tunnel_ip}/32",
                           "endpoint", f"{lab.cloud_ip}:{self.cloud_port}",
                           "persistent-keepalive", str(self.keepalive_s)])  # fmt: skip
        for side, iface, addr in (
            ("cloud", self.cloud_iface, self.cloud_tunnel_ip),
            ("device", self.device_iface, self.device_tunnel_ip),
        ):
            lab.run(side, ["ip", "addr", "add", f"{addr}/30", "dev", iface])
            lab.run(side, ["ip", "link", "set", iface, "up"])

    def peers(self, side: str = "cloud") -> list[WgPeer]:
        """`wg show IFACE dump` of one end, parsed."""
        iface = self.cloud_iface if side == "cloud" else self.device_iface
        return parse_wg_dump(self.lab.run(side, [self._wg, "show", iface, "dump"]).stdout)

    def peer(self, side: str = "cloud") -> WgPeer:
        (peer,) = self.peers(side)
        return peer

    def wait_handshake(self, timeout: float = 15.0) -> None:
        """Until both ends show a handshake."""
        _wait(
            "a WireGuard handshake",
            timeout,
            lambda: all(self.peer(s).latest_handshake for s in ("cloud", "device")),
            lambda: self.lab.log_tail("wireguard-device"),
        )

    def stop(self) -> None:
        super().stop()
        for iface in (self.cloud_iface, self.device_iface):
            (UAPI_DIR / f"{iface}.sock").unlink(missing_ok=True)


def _management(command: str, timeout: float) -> list[str]:
    """One command on 127.0.0.1:MANAGEMENT_PORT; the answer's lines up to END (or the single
    SUCCESS:/ERROR: line). Real-time notifications (">…") are skipped."""
    with socket.create_connection(("127.0.0.1", MANAGEMENT_PORT), timeout=timeout) as sock:
        reader = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
        sock.sendall(f"{command}\n".encode())
        lines: list[str] = []
        for raw in reader:
            line = raw.rstrip("\r\n")
            if line.startswith(">"):
                continue
            if line != "END":
                lines.append(line)
            if line == "END" or line.startswith(("SUCCESS:", "ERROR:")):
                break
        sock.sendall(b"quit\n")
        return lines


class OpenVPNLink(_Link):
    """openvpn server (UDP, tun, `status FILE 1`, `status-version 2`) in the cloud namespace and
    a client with CN=common_name and `management 127.0.0.1 PORT` in the device namespace.
    CONNECTED when constructed, unless `wait=False`. The server's keepalive is
    `keepalive_s`/`restart_s` (pushed to the client; the server itself waits 2 × restart_s);
    `keepalive_s=0` leaves it out: neither end pings, a blocked tunnel stays CONNECTED."""

    def __init__(
        self,
        lab: NetLab,
        common_name: str,
        *,
        keepalive_s: int = 1,
        restart_s: int = 3,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self._openvpn = find_binary("openvpn", "openvpn")
        super().__init__(lab, "tu", 233, OPENVPN_PORT)
        self.common_name = common_name
        self.device_management = f"127.0.0.1:{MANAGEMENT_PORT}"
        root = lab.root / "openvpn"
        self.server_status_path = root / "status"
        try:
            pki = make_pki(root / "pki", common_name)
            common = f"dev-type tun\nproto udp4\nca {pki.ca_cert}\nverb 3\n"
            server = root / "server.conf"
            server.write_text(
                f"{common}mode server\ntls-server\ndev {self.cloud_iface}\n"
                f"local {lab.cloud_ip}\nport {self.cloud_port}\ntopology subnet\n"
                f"server 10.233.{lab.subnet}.0 255.255.255.0\n"
                f"cert {pki.server_cert}\nkey {pki.server_key}\ndh none\n"
                + (f"keepalive {keepalive_s} {restart_s}\n" if keepalive_s else "")
                + f"status {self.server_status_path} 1\nstatus-version 2\n"
            )
            client = root / "client.conf"
            client.write_text(
                f"{common}client\ndev {self.device_iface}\nnobind\n"
                f"remote {lab.cloud_ip} {self.cloud_port}\n"
                f"cert {pki.client_cert}\nkey {pki.client_key}\n"
                "remote-cert-tls server\nverify-x509-name da-lab-server name\n"
                f"management 127.0.0.1 {MANAGEMENT_PORT}\n"
                "connect-retry 1 1\nexplicit-exit-notify 1\n"
            )
            self._procs.append(lab.spawn("cloud", [self._openvpn, str(server)], "openvpn-server"))
            _wait(  # a client that finds no server waits for its TLS timeout before retrying
                "the OpenVPN server",
                10.0,
                lambda: "Initialization Sequence Completed" in lab.log_tail("openvpn-server"),
                functools.partial(lab.log_tail, "openvpn-server"),
            )
            self._procs.append(lab.spawn("device", [self._openvpn, str(client)], "openvpn-client"))
            if wait:
                self.wait_connected(timeout)
        except BaseException:
            self.stop()
            raise

    def management(self, command: str, timeout: float = 3.0) -> list[str]:
        """Ask the client's management interface (from inside the device namespace)."""
        return self.lab.call_in("device", lambda: _management(command, timeout))

    def state(self) -> str:
        """CONNECTED, RECONNECTING, WAIT, AUTH, GET_CONFIG, … (the latest `state` line)."""
        try:
            lines = self.management("state")
        except OSError:
            return "UNREACHABLE"
        for line in reversed(lines):
            parts = line.split(",")
            if len(parts) >= 2 and parts[0].isdigit():
                return parts[1]
        return "UNKNOWN"

    def wait_connected(self, timeout: float = 30.0) -> None:
        def why() -> str:
            names = ("openvpn-server", "openvpn-client")
            return "\n".join(f"{n}:\n{self.lab.log_tail(n, 10)}" for n in names)

        _wait("OpenVPN CONNECTED", timeout, lambda: self.state() == "CONNECTED", why)
