"""A network lab for tests and benchmarks: a "cloud" and a "device" network namespace joined by a
veth pair, with firewall helpers, plus real tunnels between them (WireGuard with wireguard-go,
OpenVPN with openvpn). Needs root.

    with NetLab() as lab:
        wg = WireGuardLink(lab, keepalive_s=1)       # up, handshake done
        lab.run("device", ["ping", "-c1", wg.cloud_tunnel_ip])
        lab.drop("device", proto="udp", dport=wg.cloud_port)   # block the tunnel
        lab.restore("device")

Addresses: the veth pair gets 10.231.X.1 (cloud) and .2 (device) /30, WireGuard 10.232.X.1/.2,
OpenVPN 10.233.X.1/.2, X being the lab's subnet number (unique among live labs; its id starts
with X in hex). Interface and namespace names carry the lab id, so concurrent labs never clash —
wireguard-go's UAPI sockets (/var/run/wireguard/IFACE.sock) are shared by all namespaces.
A unix socket (a Docker engine's, a UAPI one) is reachable from any namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from ._util import (
    TestbedError,
    TestbedUnavailable,
    daemon_env,
    file_lock,
    find_binary,
    log_tail,
    pid_alive,
    terminate,
)
from .vpn import OpenVPNLink, WireGuardLink

__all__ = ["NetLab", "OpenVPNLink", "WireGuardLink"]

T = TypeVar("T")

LOCK_PATH = Path("/run/da-netlab.lock")
LAB_DIR = Path("/tmp")
CLOUD_PREFIX, DEVICE_PREFIX = "da-cloud-", "da-dev-"
UAPI_DIR = Path("/var/run/wireguard")
_CLONE_NEWNET = 0x40000000


def _namespaces(ip: str) -> list[str]:
    out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _lab_ids(ip: str) -> set[str]:
    return {
        ns.removeprefix(prefix)
        for ns in _namespaces(ip)
        for prefix in (CLOUD_PREFIX, DEVICE_PREFIX)
        if ns.startswith(prefix)
    }


def _subnet_of(lab_id: str) -> int | None:
    """A lab id starts with its subnet number X (of 10.231.X.0/30) in two hex digits."""
    try:
        return int(lab_id[:2], 16)
    except ValueError:
        return None


def _ns_pids(ip: str, ns: str) -> list[int]:
    out = subprocess.run([ip, "netns", "pids", ns], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


class NetLab:
    """Two namespaces joined by veth; everything it starts dies in `stop()` (idempotent)."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise TestbedUnavailable("the network lab needs root (ip netns, iptables)")
        self.ip = find_binary("ip", "iproute2")
        self.iptables = find_binary("iptables", "iptables")
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._cleanups: list[Callable[[], None]] = []
        self._counters = 0
        with file_lock(LOCK_PATH):
            used = {_subnet_of(lab_id) for lab_id in _lab_ids(self.ip)}
            free = [x for x in range(1, 255) if x not in used]
            if not free:
                raise TestbedError("no free 10.231.X.0/30 subnet: 254 labs alive")
            self.subnet = free[0]
            self.id = f"{self.subnet:02x}{secrets.token_hex(2)}"
            self.cloud_ns = CLOUD_PREFIX + self.id
            self.device_ns = DEVICE_PREFIX + self.id
            self.cloud_veth, self.device_veth = f"vc{self.id}", f"vd{self.id}"
            self.cloud_ip, self.device_ip = f"10.231.{self.subnet}.1", f"10.231.{self.subnet}.2"
            self.root = LAB_DIR / f"da-lab-{self.id}"
            self.root.mkdir(mode=0o700)
            (self.root / "owner.pid").write_text(f"{os.getpid()}\n")
            try:
                self._setup()
            except BaseException:
                self.stop()
                raise

    def _setup(self) -> None:
        c, d = self.cloud_ns, self.device_ns
        for ns in (c, d):
            self._ip("netns", "add", ns)
        self._ip("link", "add", self.cloud_veth, "netns", c, "type", "veth",
                 "peer", "name", self.device_veth, "netns", d)  # fmt: skip
        for ns, veth, addr in (
            (c, self.cloud_veth, self.cloud_ip),
            (d, self.device_veth, self.device_ip),
        ):
            self._ip("-n", ns, "addr", "add", f"{addr}/30", "dev", veth)
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "link", "set", veth, "up")

    def _ip(self, *args: str) -> None:
        result = subprocess.run([self.ip, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TestbedError(f"ip {' '.join(args)}: {result.stderr.strip()}")

    # -- running things in a namespace ------------------------------------------------------
    def ns(self, name: str) -> str:
        """The namespace name for "cloud", "device" or a namespace name."""
        return {"cloud": self.cloud_ns, "device": self.device_ns}.get(name, name)

    def ns_cmd(self, ns: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(ns), *argv]

    def run(
        self, ns: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.ns_cmd(ns, argv), capture_output=True, text=True, timeout=timeout,
            env=daemon_env(), check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise TestbedError(
                f"{' '.join(argv)} in {self.ns(ns)} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def spawn(self, ns: str, argv: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        """Start a long-running process in `ns` (log: root/NAME.log); `stop()` ends it."""
        log = (self.root / f"{name}.log").open("ab")
        self._logs.append(log)
        proc = subprocess.Popen(
            self.ns_cmd(ns, argv), stdout=log, stderr=subprocess.STDOUT, env=daemon_env(),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self._procs.append(proc)
        return proc

    def end(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        """SIGTERM (then SIGKILL) one process `spawn` started."""
        if proc.poll() is None:
            terminate(proc.pid, proc, timeout)
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)

    def log_tail(self, name: str, lines: int = 20) -> str:
        return log_tail(self.root / f"{name}.log", lines)

    def on_stop(self, fn: Callable[[], None]) -> None:
        """Run `fn` first thing in `stop()` (tunnels register their own stop)."""
        self._cleanups.append(fn)

    def call_in(self, ns: str, fn: Callable[[], T]) -> T:
        """Run `fn()` in a thread that joined `ns` (sockets it opens live there)."""
        path = f"/run/netns/{self.ns(ns)}"
        out: dict[str, Any] = {}

        def body() -> None:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fd = os.open(path, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    out["error"] = OSError(ctypes.get_errno(), f"setns {path}")
                    return
            finally:
                os.close(fd)
            try:
                out["value"] = fn()
            except BaseException as exc:
                out["error"] = exc

        thread = threading.Thread(target=body, name=f"in-{self.ns(ns)}", daemon=True)
        thread.start()
        thread.join()
        if "error" in out:
            raise out["error"]
        value: T = out["value"]
        return value

    def http(
        self,
        ns: str,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> tuple[int, bytes]:
        """One HTTP request made from `ns` (no proxies): (status, body); raises OSError when
        nothing answers."""

        def request() -> tuple[int, bytes]:
            req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(req, timeout=timeout) as resp:
                    return int(resp.status), bytes(resp.read())
            except urllib.error.HTTPError as exc:
                return int(exc.code), bytes(exc.read())

        return self.call_in(ns, request)

    # -- firewall ---------------------------------------------------------------------------
    def _rule(self, ns: str, *rule: str) -> None:
        self.run(ns, [self.iptables, "-w", "5", *rule])

    def drop(
        self,
        ns: str,
        *,
        proto: str | None = None,
        dport: int | None = None,
        sport: int | None = None,
        dest: str | None = None,
    ) -> None:
        """Drop matching packets leaving `ns` and their replies (the mirrored match) arriving,
        on every interface but loopback. E.g. `drop("device", proto="udp", dport=51820)`."""
        if (dport is not None or sport is not None) and proto not in ("tcp", "udp"):
            raise ValueError("dport/sport need proto='tcp' or 'udp'")
        out, back = ["!", "-o", "lo"], ["!", "-i", "lo"]
        if proto is not None:
            out += ["-p", proto]
            back += ["-p", proto]
        if dest is not None:
            out += ["-d", dest]
            back += ["-s", dest]
        if dport is not None:
            out += ["--dport", str(dport)]
            back += ["--sport", str(dport)]
        if sport is not None:
            out += ["--sport", str(sport)]
            back += ["--dport", str(sport)]
        self._rule(ns, "-A", "OUTPUT", *out, "-j", "DROP")
        self._rule(ns, "-A", "INPUT", *back, "-j", "DROP")

    def cut_all(self, ns: str) -> None:
        """Drop everything over the veth in `ns` (both directions)."""
        veth = self.cloud_veth if self.ns(ns) == self.cloud_ns else self.device_veth
        self._rule(ns, "-A", "OUTPUT", "-o", veth, "-j", "DROP")
        self._rule(ns, "-A", "INPUT", "-i", veth, "-j", "DROP")

    def restore(self, ns: str) -> None:
        """Remove every rule `drop`/`cut_all`/`count` added in `ns`."""
        self._rule(ns, "-F")

    def count(self, ns: str, *match: str) -> Callable[[], int]:
        """Count the packets arriving in `ns` that match (iptables INPUT match arguments, e.g.
        `"-p", "icmp", "--icmp-type", "echo-request"`); returns a reader of the count so far.
        Nothing is dropped; `restore(ns)` removes the counter."""
        self._counters += 1
        tag = f"da-count-{self._counters}"
        self._rule(ns, "-A", "INPUT", *match, "-m", "comment", "--comment", tag)

        def read() -> int:
            out = self.run(ns, [self.iptables, "-w", "5", "-L", "INPUT", "-v", "-x", "-n"]).stdout
            for line in out.splitlines():
                if f"/* {tag} */" in line:
                    return int(line.split()[0])
            raise TestbedError(f"counter {tag} is gone from {self.ns(ns)}")

        return read

    # -- teardown ---------------------------------------------------------------------------
    def stop(self) -> None:
        """End every process and tunnel of the lab, delete its namespaces and files."""
        errors: list[str] = []
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as exc:
                errors.append(f"cleanup: {exc}")
        for proc in reversed(list(self._procs)):
            self.end(proc)
        for ns in (getattr(self, "cloud_ns", None), getattr(self, "device_ns", None)):
            if ns is None:
                continue
            for pid in _ns_pids(self.ip, ns):  # started in the lab by a test (devcloud, agent)
                terminate(pid, None, 5.0)
            if ns in _namespaces(self.ip):
                try:
                    self._ip("netns", "del", ns)
                except TestbedError as exc:
                    errors.append(str(exc))
        for log in self._logs:
            log.close()
        self._logs.clear()
        root = getattr(self, "root", None)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        if errors:
            raise TestbedError("lab teardown: " + "; ".join(errors))

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def purge_stale() -> list[str]:
        """Delete the namespaces (and their processes, UAPI sockets, files) of labs whose owner
        process is gone, e.g. after a test run was SIGKILLed. Returns the lab ids purged."""
        ip = find_binary("ip", "iproute2")
        purged = []
        for lab_id in sorted(_lab_ids(ip)):
            root = LAB_DIR / f"da-lab-{lab_id}"
            try:
                owner = int((root / "owner.pid").read_text())
            except (OSError, ValueError):
                owner = 0
            if owner and pid_alive(owner):
                continue
            for ns in (CLOUD_PREFIX + lab_id, DEVICE_PREFIX + lab_id):
                for pid in _ns_pids(ip, ns):
                    terminate(pid, None, 5.0)
                subprocess.run([ip, "netns", "del", ns], capture_output=True, check=False)
            for sock in (f"wgc{lab_id}.sock", f"wgd{lab_id}.sock"):
                (UAPI_DIR / sock).unlink(missing_ok=True)
            shutil.rmtree(root, ignore_errors=True)
            purged.append(lab_id)
        return purged
