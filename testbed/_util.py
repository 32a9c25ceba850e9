"""Process, port and filesystem helpers shared by the testbed parts."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

MAX_SOCKET_PATH = 100
_MNT_DETACH = 2
# Variables that must not leak from the caller into the daemons we start.
_SCRUBBED_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CONTEXT",
)


class TestbedError(RuntimeError):
    """A testbed part misbehaved (failed to start, stop, push, ...)."""

    __test__ = False  # not a pytest test class


class TestbedUnavailable(TestbedError):
    """A real part the testbed needs is missing or cannot run on this machine."""


def find_binary(name: str, package: str, *extra_dirs: str) -> str:
    """Absolute path of `name`, or TestbedUnavailable naming the apt package.

    TESTBED_<NAME> (e.g. TESTBED_DOCKERD, TESTBED_DOCKER_REGISTRY) overrides the lookup."""
    override_var = "TESTBED_" + name.upper().replace("-", "_")
    override = os.environ.get(override_var)
    if override:
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise TestbedUnavailable(
                f"{name} not found at {override} (from ${override_var}) — apt-get install {package}"
            )
        return override
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    found = shutil.which(name, path=search)
    if found is None:
        raise TestbedUnavailable(f"{name} not found — apt-get install {package}")
    return found


def daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    path = env.get("PATH", "")
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin"):
        if directory not in path.split(os.pathsep):
            path = f"{path}{os.pathsep}{directory}" if path else directory
    env["PATH"] = path
    return env


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def read_pid(pidfile: Path, must_mention: str) -> int | None:
    """The pid in `pidfile` if that process is alive and its command line mentions
    `must_mention` (guards against pid reuse)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid_alive(pid) and any(must_mention in arg for arg in cmdline(pid)):
        return pid
    return None


def terminate(
    pid: int, proc: subprocess.Popen[bytes] | None, timeout: float, sig: int = signal.SIGTERM
) -> None:
    """Send `sig`, wait up to `timeout` s, then SIGKILL. Reaps `proc` if it is our child."""
    for current, wait in ((sig, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, current)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not pid_alive(pid):
                return
            time.sleep(0.05)
    raise TestbedError(f"process {pid} survived SIGKILL")


def pids_matching(fragment: str, names: Iterable[str]) -> list[int]:
    """Pids of processes named one of `names` whose argv mentions `fragment`."""
    wanted = set(names)
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        argv = cmdline(int(entry.name))
        if argv and os.path.basename(argv[0]) in wanted and any(fragment in a for a in argv):
            found.append(int(entry.name))
    return found


def mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def unmount_all(root: Path) -> None:
    """Lazily unmount everything mounted at or below `root`, deepest first."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            libc.umount2(point.encode(), _MNT_DETACH)


def remove_tree(root: Path) -> None:
    """Unmount and delete `root` (a testbed's temporary directory)."""
    if not root.exists():
        return
    unmount_all(root)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        raise TestbedError(f"could not remove {root}")


def wait_for(what: str, timeout: float, check: Callable[[], object]) -> None:
    """Poll `check()` until truthy; raises TestbedError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing) for the block: test processes that
    share a cache (pytest-xdist workers, side-by-side sessions) fill it one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
