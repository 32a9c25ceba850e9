"""The devcloud and the agent as real processes, for integration tests and the demo.

The agent runs exactly as on a device (`python -m agent run --config …`), so tests can
SIGKILL it mid-update and start it again on the same data dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from devcloud.client import DevCloudClient

from ._util import TestbedError, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent


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
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> DevCloudProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devcloud",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--port-file",
                str(self.port_file),
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
        return f"http://127.0.0.1:{self.port_file.read_text().strip()}"

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


class AgentProcess:
    """One device: a config.json, a data dir, a lock dir and the agent process."""

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
        self.config: dict[str, Any] = {
            "uuid": uuid,
            "apiEndpoint": api_endpoint,
            "deviceApiKey": api_key,
            "deviceType": "generic-amd64",
            "listenPort": 0,
            "appUpdatePollInterval": poll_interval_ms,
            "dataDir": str(self.data_dir),
            "dockerHost": docker_host,
            "lockDir": str(self.lock_dir),
            "logFormat": "json",
            **(extra or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def write_config(self, **changes: Any) -> None:
        self.config.update(changes)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def start(self) -> AgentProcess:
        if self.running:
            raise TestbedError("agent already running")
        self.write_config()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
            cwd=REPO_ROOT,
            env=_python_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

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
