"""The devcloud and the agent as real processes, for integration tests and the demo.

The agent runs exactly as on a device (`python -m agent run --config …`), so tests can
SIGKILL it mid-update and start it again on the same data dir.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from devcloud.client import DevCloudClient

from ._util import TestbedError, wait_for
from .supnet import supervisor_network_for

REPO_ROOT = Path(__file__).resolve().parent.parent
HOOKS_ENV = "DEVICE_AGENT_TEST_HOOKS"  # testbed/testhooks.py
RECORD_HOST_ENV = "DEVICE_AGENT_TEST_RECORD_HOST"  # testbed/hoststandin.py


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DevCloudProcess:
    """`python -m devcloud` on a free 127.0.0.1 port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port_file = root / "devcloud.port"
        self.log_path = root / "devcloud.log"
        self.host = "127.0.0.1"  # a namespace's address when it runs in one
        self.command_prefix: list[str] = []  # e.g. ["ip", "netns", "exec", "cloud"]
        self.extra_args: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> DevCloudProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                *self.command_prefix,
                sys.executable,
                "-m",
                "devcloud",
                "--host",
                self.host,
                "--port",
                "0",
                "--port-file",
                str(self.port_file),
                *self.extra_args,
            ],
            cwd=REPO_ROOT,
            env=_python_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for("devcloud to listen", timeout, self.port_file.exists)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port_file.read_text().strip()}"

    def client(self) -> DevCloudClient:
        return DevCloudClient(self.url)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def free_port() -> int:
    """A TCP port nobody listens on right now (the agent's local API binds all interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    content_type: str
    body: Any  # parsed JSON, or text
    raw: bytes


class AgentProcess:
    """One device: a config.json, a data dir, a lock dir and the agent process."""

    # Test suites set this (tests/integration/conftest.py: 50 ms): the agent then watches its loop
    # and logs every callback that blocks it longer, with the stack
    # (agent/loopmonitor.py); `slow_callbacks()` lists them. None: off (demo, benchmarks).
    loop_monitor_ms: float | None = None
    started: ClassVar[list[AgentProcess]] = []  # every agent started, in order (for the check)

    def __init__(
        self,
        root: Path,
        *,
        uuid: str,
        api_key: str,
        api_endpoint: str,
        docker_host: str,
        poll_interval_ms: int = 1000,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.uuid = uuid
        self.config_path = root / "config.json"
        self.data_dir = root / "data"
        self.lock_dir = root / "locks"
        self.log_path = root / "agent.log"
        self.command_prefix: list[str] = []  # e.g. ["ip", "netns", "exec", "device"]
        self.env: dict[str, str] = {}  # extra environment for the next start (test hooks)
        # reboot, shutdown and the hostname recorded in {dataDir}/host-actions.jsonl (see
        # host_actions) instead of reaching this machine's logind and hostnamed
        # (testbed/hoststandin.py); off: the agent talks to the host for real
        self.record_host = True
        self.config: dict[str, Any] = {
            "uuid": uuid,
            "apiEndpoint": api_endpoint,
            "deviceApiKey": api_key,
            "deviceType": "generic-amd64",
            "listenPort": free_port(),
            "appUpdatePollInterval": poll_interval_ms,
            "dataDir": str(self.data_dir),
            "dockerHost": docker_host,
            "lockDir": str(self.lock_dir),
            "logFormat": "json",
            # this engine's own supervisor network (several engines share this host)
            **supervisor_network_for(docker_host),
            **(extra or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def write_config(self, **changes: Any) -> None:
        self.config.update(changes)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def _entry_point(self) -> str:
        """`agent`, or with the host recorder or $DEVICE_AGENT_TEST_HOOKS=1 (in `env` or this
        process's environment) the test entry point that installs them first."""
        hooks = self.env.get(HOOKS_ENV, os.environ.get(HOOKS_ENV))
        return "testbed.agent_main" if hooks == "1" or self.record_host else "agent"

    def start(self) -> AgentProcess:
        if self.running:
            raise TestbedError("agent already running")
        self.write_config()
        self._log = self.log_path.open("ab")
        monitor = {}
        if self.loop_monitor_ms is not None:
            monitor = {"DEVICE_AGENT_SLOW_CALLBACK_MS": str(self.loop_monitor_ms)}
        AgentProcess.started.append(self)
        self._proc = subprocess.Popen(
            [
                *self.command_prefix,
                sys.executable,
                "-m",
                self._entry_point(),
                "run",
                "--config",
                str(self.config_path),
            ],
            cwd=REPO_ROOT,
            env={
                **_python_env(),
                **monitor,
                RECORD_HOST_ENV: str(int(self.record_host)),
                **self.env,
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the agent to end by itself; its exit code (-9 for SIGKILL), or None if it
        still runs after `timeout` seconds."""
        if self._proc is None:
            return None
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the clean shutdown a device's init would do."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: a power cut as far as the agent can tell."""
        return self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: int, timeout: float) -> int | None:
        code = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(sig)
                try:
                    code = self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    code = self._proc.wait()
            else:
                code = self._proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    # --- the local supervisor API ---------------------------------------------------------------

    @property
    def api_url(self) -> str:
        host = self.config.get("listenAddress") or "127.0.0.1"
        return f"http://{host}:{self.config['listenPort']}"

    def api_key(self, app_id: int | None = None) -> str:
        """The device's global key, or an app's scoped key (as injected into its containers)."""
        keys = json.loads((self.data_dir / "api-keys.json").read_text())
        return str(keys["global"] if app_id is None else keys["apps"][str(app_id)])

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = "global",
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> ApiAnswer:
        """One request to the agent's API, with the global key (`key="global"`), another key,
        or none (`key=None`). Never raises for an HTTP status."""
        if key == "global":
            key = self.api_key()
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                status, ctype, raw = (
                    response.status,
                    response.headers.get("Content-Type", ""),
                    response.read(),
                )
        except urllib.error.HTTPError as exc:
            status, ctype, raw = exc.code, exc.headers.get("Content-Type", ""), exc.read()
        parsed: Any = raw.decode(errors="replace")
        if ctype.startswith("application/json") and raw:
            parsed = json.loads(raw)
        return ApiAnswer(status, ctype, parsed, raw)

    def wait_api(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            try:
                return self.api("GET", "/ping", key=None, timeout=2).status == 200
            except OSError:
                return False

        wait_for("the agent's API", timeout, up)

    def host_actions(self) -> list[str]:
        """What the host recorder was asked to do (reboot, shutdown, hostname), in order."""
        path = self.data_dir / "host-actions.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["action"] for line in path.read_text().splitlines() if line]

    def events(self) -> list[dict[str, Any]]:
        """The agent's JSON log lines, parsed (other lines skipped)."""
        out: list[dict[str, Any]] = []
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == name]

    def slow_callbacks(self) -> list[dict[str, Any]]:
        """What blocked the agent's event loop (see `loop_monitor_ms`), except what the monitor
        excuses (the test hook that blocks it on purpose, asyncio's debug bookkeeping, kernel
        stalls in asyncio's own non-blocking calls, thread start-up: agent/loopmonitor.py)."""
        return [e for e in self.events_named("slow_callback") if not e.get("excused")]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def wait_for_event(self, name: str, timeout: float, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events_named(name):
                if all(event.get(k) == v for k, v in match.items()):
                    return event
            if not self.running:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"no {name} {match or ''} within {timeout}s; agent log tail:\n{self.log_tail()}"
        )
