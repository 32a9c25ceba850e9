"""A private dockerd: own data-root, exec-root, socket and containerd, no host networking."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import docker

from ._util import (
    MAX_SOCKET_PATH,
    TestbedError,
    TestbedUnavailable,
    daemon_env,
    find_binary,
    log_tail,
    pid_alive,
    pids_matching,
    read_pid,
    remove_tree,
    terminate,
)
from .supnet import remove_bridge

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
# Processes a dockerd leaves behind when it dies hard (matched only together with our exec-root).
_LEFTOVER_NAMES = ("containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy")


class PrivateEngine:
    """One dockerd rooted at `root`:

    root/data (data-root), root/exec (exec-root), root/docker.sock, root/dockerd.pid,
    root/daemon.json (empty config, so /etc/docker/daemon.json is ignored), root/dockerd.log.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        tcp_address: str | None = None,
        cap_wrapper: bool = False,
    ) -> None:
        """`tcp_address` ("127.0.0.5:2375"): also serve the API there, plain TCP, as a balenaOS
        development image does (the balena CLI builds on it). `cap_wrapper`: run containers
        through testbed/capdrop_runtime.py, which drops the capabilities this machine lacks, so
        privileged containers start in a VM with a reduced bounding set."""
        self._root = Path(root).resolve() if root is not None else None
        self.tcp_address = tcp_address
        self.cap_wrapper = cap_wrapper
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- paths -------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        if self._root is None:
            raise TestbedError("PrivateEngine has no root yet: call start(root)")
        return self._root

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        """DOCKER_HOST value, e.g. unix:///tmp/da-x1y2/docker.sock."""
        return f"unix://{self.socket_path}"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def pid(self) -> int | None:
        """Pid of the running dockerd (ours, or one started earlier on the same root)."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        if self._root is None:
            return None
        return read_pid(self.pidfile, str(self.root))

    # -- lifecycle ---------------------------------------------------------------------
    def start(
        self, root: Path | str | None = None, timeout: float = START_TIMEOUT
    ) -> PrivateEngine:
        if root is not None:
            self._root = Path(root).resolve()
        root_dir = self.root
        dockerd = find_binary("dockerd", "docker.io")
        find_binary("containerd", "containerd")
        find_binary("runc", "runc")
        if len(str(self.socket_path)) >= MAX_SOCKET_PATH:
            raise TestbedError(f"socket path too long (>= {MAX_SOCKET_PATH}): {self.socket_path}")
        if self.pid is not None:
            raise TestbedError(f"a dockerd is already running on {root_dir} (pid {self.pid})")
        root_dir.mkdir(parents=True, exist_ok=True)
        (root_dir / "daemon.json").write_text(json.dumps({}))
        args = [
            dockerd,
            "--config-file", str(root_dir / "daemon.json"),
            "--data-root", str(root_dir / "data"),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "-H", self.host,
            "--storage-driver", "overlay2",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
        ]  # fmt: skip
        if self.tcp_address is not None:
            # --tls=false says "plain TCP on purpose" (no TLS warning delay)
            args += ["-H", f"tcp://{self.tcp_address}", "--tls=false"]
        if self.cap_wrapper:
            wrapper = self._write_cap_wrapper()
            args += ["--add-runtime", f"capdrop={wrapper}", "--default-runtime", "capdrop"]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the daemon
        self._log.write(f"\n=== testbed: starting {' '.join(args)}\n".encode())
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=daemon_env(),
                start_new_session=True,  # survives the caller (scripts/engine), no stray ^C
                close_fds=True,
            )
        except OSError as exc:
            raise TestbedUnavailable(f"cannot run {dockerd}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while not self.ping():
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                self._proc = None
                self._cleanup_leftovers()
                raise TestbedUnavailable(
                    f"dockerd exited with status {code} during start; "
                    f"{self.log_path} ends with:\n{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TestbedUnavailable(
                    f"dockerd did not answer /_ping within {timeout:.0f}s; "
                    f"{self.log_path} ends with:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.1)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM dockerd, SIGKILL after `timeout` s; then reap whatever it left behind."""
        self._signal_stop(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash dockerd (SIGKILL) and clean up its containerd, shims and containers."""
        self._signal_stop(signal.SIGKILL, 0.0)

    def restart(self, timeout: float = START_TIMEOUT) -> PrivateEngine:
        self.stop()
        return self.start(timeout=timeout)

    def purge(self) -> None:
        """Stop and delete the whole root (unmounting whatever dockerd left mounted)."""
        if self._root is None:
            return
        bridges = self._bridges() if self.is_running() else []
        self.stop()
        remove_bridge(self.host)  # the supervisor network's, which dockerd leaves behind
        # dockerd leaves its networks' bridges behind too: left, each would hold one of the
        # engines' default address pools, and a later engine finds none free
        for name in bridges:
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
        remove_tree(self.root)

    def _bridges(self) -> list[str]:
        """The host interfaces of this engine's bridge networks (not `none`/`host`)."""
        try:
            with contextlib.closing(self.client(timeout=10)) as client:
                networks = client.api.networks()
        except Exception:  # purging must go on whatever the engine answers
            return []
        return [
            (n.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{n['Id'][:12]}"
            for n in networks
            if n.get("Driver") == "bridge"
        ]

    def is_running(self) -> bool:
        return self.pid is not None and self.ping()

    def ping(self, timeout: float = 2.0) -> bool:
        """True if the socket answers GET /_ping with 200 OK."""
        if self._root is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = b""
                while chunk := sock.recv(4096):
                    reply += chunk
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.") and reply.split(b" ", 2)[1:2] == [b"200"]

    def client(self, timeout: int = 120) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=timeout)

    # -- internals ---------------------------------------------------------------------
    def _signal_stop(self, sig: int, timeout: float) -> None:
        if self._root is None:
            return
        pid = self.pid
        proc = self._proc if self._proc is not None and self._proc.pid == pid else None
        if pid is not None:
            terminate(pid, proc, timeout, sig)
        elif self._proc is not None:
            self._proc.poll()
        self._proc = None
        self._close_log()
        self._cleanup_leftovers()

    def _cleanup_leftovers(self) -> None:
        """After dockerd is gone: stop its containerd, containers and shims if still alive."""
        containerd_pidfile = self.exec_root / "containerd" / "containerd.pid"
        containerd_pid = read_pid(containerd_pidfile, str(self.root))
        if containerd_pid is not None:
            terminate(containerd_pid, None, 5.0)
        # An orphaned containerd may linger as a zombie, which dockerd would mistake for a live
        # containerd on the next start (and time out connecting to it).
        containerd_pidfile.unlink(missing_ok=True)
        runc_root = self.exec_root / "runtime-runc" / "moby"
        if runc_root.is_dir() and any(runc_root.iterdir()):
            runc = find_binary("runc", "runc")
            for state in runc_root.iterdir():
                subprocess.run(
                    [runc, "--root", str(runc_root), "delete", "--force", state.name],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
        for pid in pids_matching(f"{self.exec_root}/", _LEFTOVER_NAMES):
            if pid_alive(pid):
                with contextlib.suppress(TestbedError):
                    terminate(pid, None, 2.0)

    def _write_cap_wrapper(self) -> Path:
        """root/capdrop-runtime: runs testbed/capdrop_runtime.py in front of runc."""
        runc = find_binary("runc", "runc")
        script = Path(__file__).with_name("capdrop_runtime.py")
        wrapper = self.root / "capdrop-runtime"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {script} {runc} "$@"\n')
        wrapper.chmod(0o755)
        return wrapper

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PrivateEngine:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PrivateEngine(root={self._root}, pid={self.pid})"
