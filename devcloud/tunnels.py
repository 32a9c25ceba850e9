"""The cloud's own view of its tunnel endpoints: `wg show IFACE dump` samples and the OpenVPN
server's status file (`status FILE 1` with `status-version 2`).

Parsing is pure (text in, values out); the watchers keep what one sample can't tell: when a
peer's rx counter last moved, and whether a peer or a common name was ever seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WgPeer:
    public_key: str
    endpoint: str | None
    latest_handshake: float | None  # unix time; None before the first handshake
    rx_bytes: int
    tx_bytes: int
    keepalive_s: int | None


def parse_wg_dump(text: str) -> list[WgPeer]:
    """The peers of `wg show IFACE dump` (8 tab-separated fields a peer; the interface line
    has 4). `wg show all dump` lines carry the interface first; that column is dropped."""
    peers = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 9:
            fields = fields[1:]
        if len(fields) != 8:
            continue  # the interface line, or noise
        key, _psk, endpoint, _ips, handshake, rx, tx, keepalive = fields
        try:
            stamp, rx_bytes, tx_bytes = int(handshake), int(rx), int(tx)
        except ValueError:
            continue
        peers.append(
            WgPeer(
                public_key=key,
                endpoint=None if endpoint == "(none)" else endpoint,
                latest_handshake=float(stamp) if stamp > 0 else None,
                rx_bytes=rx_bytes,
                tx_bytes=tx_bytes,
                keepalive_s=int(keepalive) if keepalive.isdigit() else None,
            )
        )
    return peers


@dataclass(frozen=True)
class PeerTrack:
    peer: WgPeer
    rx_moved_at: float | None  # when its rx counter last changed (first sample: its handshake)


class WireGuardWatch:
    """Samples of one WireGuard interface, by peer public key."""

    def __init__(self, iface: str) -> None:
        self.iface = iface
        self.peers: dict[str, PeerTrack] = {}
        self.sampled_at: float | None = None
        self.error: str | None = None

    def update(self, dump: str, now: float) -> None:
        """Fold one `wg show IFACE dump` answer taken at `now` into the tracks."""
        fresh: dict[str, PeerTrack] = {}
        for peer in parse_wg_dump(dump):
            old = self.peers.get(peer.public_key)
            if old is None:
                moved = peer.latest_handshake if peer.rx_bytes else None
            elif old.peer.rx_bytes != peer.rx_bytes:
                moved = now
            else:
                moved = old.rx_moved_at
            fresh[peer.public_key] = PeerTrack(peer, moved)
        self.peers = fresh
        self.sampled_at = now
        self.error = None

    async def sample(self, now: float, timeout: float = 2.0) -> None:
        wg = shutil.which("wg") or "/usr/bin/wg"
        try:
            proc = await asyncio.create_subprocess_exec(
                wg,
                "show",
                self.iface,
                "dump",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            self.error = f"cannot run wg: {exc}"
            return
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException as exc:  # timed out, or the sampler is being cancelled
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                # bounded: on a cancelled task the child watcher may already have reaped it
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(proc.wait(), 2.0)
            if not isinstance(exc, TimeoutError):
                raise
            self.error = f"wg show {self.iface} dump timed out"
            return
        if proc.returncode != 0:
            self.error = err.decode(errors="replace").strip() or f"wg exited {proc.returncode}"
            return
        self.update(out.decode(errors="replace"), now)


@dataclass(frozen=True)
class OvpnClient:
    common_name: str
    real_address: str
    virtual_address: str
    bytes_received: int
    bytes_sent: int
    connected_since: float | None


@dataclass(frozen=True)
class OvpnStatus:
    written_at: float | None  # the file's TIME line (unix time)
    clients: dict[str, OvpnClient]  # by common name


def _int(value: str) -> int:
    return int(value) if value.isdigit() else 0


def parse_openvpn_status(text: str) -> OvpnStatus:
    """An OpenVPN server status file, `status-version 2` (comma separated):
    `TIME,<text>,<time_t>` and `CLIENT_LIST,CN,real,virtual,virtual6,rx,tx,since,since_t,…`."""
    written_at: float | None = None
    clients: dict[str, OvpnClient] = {}
    for line in text.splitlines():
        fields = line.rstrip("\r").split(",")
        if fields[0] == "TIME" and len(fields) >= 3 and fields[2].isdigit():
            written_at = float(fields[2])
        elif fields[0] == "CLIENT_LIST" and len(fields) >= 9:
            since = fields[8]
            clients[fields[1]] = OvpnClient(
                common_name=fields[1],
                real_address=fields[2],
                virtual_address=fields[3],
                bytes_received=_int(fields[5]),
                bytes_sent=_int(fields[6]),
                connected_since=float(since) if since.isdigit() else None,
            )
    return OvpnStatus(written_at, clients)


class OpenVpnWatch:
    """The OpenVPN server's status file; updated_at = its TIME line, else its mtime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.status = OvpnStatus(None, {})
        self.updated_at: float | None = None
        self.ever_listed: set[str] = set()
        self.error: str | None = None

    def update(self, text: str, mtime: float | None) -> None:
        """Fold one read of the file; a file caught mid-rewrite (no END line) is skipped."""
        if not any(line.strip() == "END" for line in text.splitlines()):
            return
        self.status = parse_openvpn_status(text)
        self.updated_at = self.status.written_at or mtime
        self.ever_listed.update(self.status.clients)
        self.error = None

    def read(self) -> None:
        try:
            text = self.path.read_text(errors="replace")
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror or exc}"
            return
        self.update(text, mtime)

    def age(self, now: float) -> float | None:
        return None if self.updated_at is None else max(0.0, now - self.updated_at)
