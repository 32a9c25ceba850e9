"""The agent as a container on the engine it drives — as on a board — instead of a host process.

Same interface as AgentProcess (config, API, events, stop/kill), so the integration scenarios
run unchanged. The container uses host networking (the devcloud and the registry listen on
127.0.0.1), the engine's socket at /var/run/docker.sock, and the device's root dir (config,
data dir, lock dir) mounted at the same path, because the engine bind-mounts the lock dirs into
the apps' containers by their host paths.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from ._util import TestbedError, daemon_env
from .processes import AgentProcess

SOCKET_IN_CONTAINER = "/var/run/docker.sock"


class ContainerAgent(AgentProcess):
    def __init__(
        self,
        root: Path,
        *,
        image: str,
        engine_host: str,
        platform: str,
        uuid: str,
        api_key: str,
        api_endpoint: str,
        extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            root,
            uuid=uuid,
            api_key=api_key,
            api_endpoint=api_endpoint,
            docker_host=f"unix://{SOCKET_IN_CONTAINER}",
            extra=extra,
        )
        if not engine_host.startswith("unix://"):
            raise TestbedError(f"a unix socket engine is needed, not {engine_host}")
        self.image = image
        self.engine_host = engine_host
        self.platform = platform
        self.name = f"device-agent-{uuid[:12]}"
        self.env = env or {}

    def docker(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.engine_host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=daemon_env(),
        )

    def start(self) -> ContainerAgent:
        if self.running:
            raise TestbedError("agent already running")
        self.write_config()
        self.docker("rm", "-f", self.name)
        socket_path = self.engine_host.removeprefix("unix://")
        env = [a for k, v in self.env.items() for a in ("-e", f"{k}={v}")]
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                "docker", "-H", self.engine_host, "run", "--rm", "--name", self.name,
                "--platform", self.platform, "--network", "host",
                "-v", f"{socket_path}:{SOCKET_IN_CONTAINER}",
                "-v", f"{self.root}:{self.root}",
                *env,
                self.image, "--config", str(self.config_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=daemon_env(),
        )  # fmt: skip
        return self

    def exec(self, *command: str) -> str:
        """Run `command` in the agent's container; its stdout."""
        run = self.docker("exec", self.name, *command)
        if run.returncode != 0:
            raise TestbedError(f"exec {command} failed: {run.stderr.strip()}")
        return run.stdout

    def _end(self, sig: int, timeout: float) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            if sig == signal.SIGKILL:
                self.docker("kill", self.name)
            else:
                self.docker("stop", "-t", str(int(timeout)), self.name, timeout=timeout + 30)
        code = super()._end(sig, timeout)
        self.docker("rm", "-f", self.name)
        return code
