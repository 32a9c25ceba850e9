"""The real balena CLI (npm `balena-cli`, testbed/balena_cli/, installed by scripts/setup)
against the agent in local mode: `balena push <ip>` without and with livepush, `balena logs <ip>`.

The CLI reaches a device at fixed ports: its supervisor API on 48484 and its Docker engine on
2375 (src/utils/device/deploy.ts). So the device here is one loopback address of its own
(127.0.0.N): the agent listens there (`listenAddress`) and a private engine serves its API there
over TCP. The CLI's default for a bare Dockerfile project is a privileged container, which
this machine's engine can't grant fully when its bounding set lacks a capability: the engine
runs containers through testbed/capdrop_runtime.py, which drops only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import pytest

from testbed import PrivateEngine, Registry, TestbedError, publish
from testbed._util import remove_tree
from testbed.processes import REPO_ROOT, AgentProcess, DevCloudProcess
from tests.helpers import wait_until

CLI_DIR = REPO_ROOT / "testbed" / "balena_cli"
CLI = CLI_DIR / "node_modules" / ".bin" / "balena"
SUPERVISOR_PORT = 48484  # fixed in the CLI
ENGINE_PORT = 2375  # the CLI's default for a device's engine
CLI_TIMEOUT = 300.0
# the service: says what /msg.txt holds, then idles (SIGTERM ends it at once)
SERVICE_CMD = "cat /msg.txt; trap 'exit 0' TERM; while true; do sleep 1; done"


def dockerfile(base: str, say_first: str = "") -> str:
    """The project's Dockerfile; `say_first`: an extra line the service prints at start."""
    command = f"echo {say_first}; {SERVICE_CMD}" if say_first else SERVICE_CMD
    return f"FROM {base}\nCOPY msg.txt /msg.txt\nCMD {json.dumps(['sh', '-c', command])}\n"


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def free_loopback() -> str:
    """A 127.0.0.N on which nothing holds the CLI's two ports."""
    for n in random.sample(range(2, 255), 60):
        address = f"127.0.0.{n}"
        if _port_free(address, SUPERVISOR_PORT) and _port_free(address, ENGINE_PORT):
            return address
    raise TestbedError("no loopback address with ports 48484 and 2375 free")


@dataclass
class Cli:
    """One balena CLI run: its own HOME, no analytics, no error reports, no update checks."""

    home: Path
    output: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TZ")}
        return {
            **keep,
            "HOME": str(self.home),
            "BALENARC_DATA_DIRECTORY": str(self.home / ".balena"),
            "BALENARC_NO_ANALYTICS": "1",
            "BALENARC_NO_SENTRY": "1",
            # the CLI wants node 24 and warns on Debian's 20; the commands used here work
            "BALENARC_UNSUPPORTED": "1",
            "NO_UPDATE_NOTIFIER": "1",
            "CI": "true",
        }

    def run(
        self, *args: str, cwd: Path, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [str(CLI), *args],
                cwd=cwd,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"balena {' '.join(args)} ran over {timeout:.0f} s:\n"
                f"{_text(exc.stdout)}{_text(exc.stderr)}"
            )
        self.output = (done.stdout + done.stderr).splitlines()
        return done

    def start(self, *args: str, cwd: Path) -> Cli:
        """Run in the background; its output lines collect in `output`."""
        self.proc = subprocess.Popen(
            [str(CLI), *args],
            cwd=cwd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    def printed(self, text: str) -> bool:
        return any(text in line for line in list(self.output))

    def logged(self, service: str, text: str) -> bool:
        """A service's log line as the CLI shows it: `[Logs]    [time] [main] text`."""
        return any(
            line.startswith("[Logs]") and f"[{service}] " in line and line.endswith(text)
            for line in list(self.output)
        )

    def stop(self, grace: float = 15.0) -> None:
        """Ctrl-C (the CLI cleans up its livepush containers), then kill what's left after
        `grace` s. (`balena device logs` ignores Ctrl-C while its stream is open: CLI 25.2.6's
        SIGINT handler emits 'close' on the stream, and it waits for 'end'.)"""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def transcript(self) -> str:
        return "\n".join(self.output[-80:])


@dataclass(frozen=True)
class CliDevice:
    address: str
    engine: PrivateEngine
    docker: docker.DockerClient
    agent: AgentProcess
    project: Path  # a bare Dockerfile project
    base: str  # its base image, from the test registry
    home: Path

    def cli(self) -> Cli:
        return Cli(self.home)

    def main_container(self) -> docker.models.containers.Container | None:
        for c in self.docker.containers.list(filters={"label": "io.balena.service-name=main"}):
            return c
        return None

    def exec_cat(self, path: str) -> str | None:
        container = self.main_container()
        if container is None:
            return None
        with contextlib.suppress(docker.errors.APIError):
            code, out = container.exec_run(["cat", path])
            if code == 0:
                return out.decode(errors="replace").strip()
        return None


@pytest.fixture(scope="module")
def cli_device(devcloud: DevCloudProcess, registry: Registry) -> Iterator[CliDevice]:
    """A device at its own loopback address: a private engine on tcp ADDRESS:2375 (with the
    capability-dropping runtime), the agent in local mode on ADDRESS:48484, and a Dockerfile
    project whose base image comes from the test registry."""
    if not CLI.exists():
        pytest.fail(f"the balena CLI is not installed ({CLI}): run scripts/setup", pytrace=False)
    address = free_loopback()
    root = Path(tempfile.mkdtemp(prefix="da-cli-", dir="/tmp"))
    engine = PrivateEngine(root / "e", tcp_address=f"{address}:{ENGINE_PORT}", cap_wrapper=True)
    agent: AgentProcess | None = None
    try:
        try:
            engine.start()
        except TestbedError as exc:
            pytest.fail(f"testbed: the CLI's engine is unavailable — {exc}", pytrace=False)
        client = engine.client()
        base = publish(client, registry, "cli/base", "v1", marker="cli-base").ref_by_tag
        project = root / "project"
        project.mkdir()
        (project / "Dockerfile").write_text(dockerfile(base))
        (project / "msg.txt").write_text("hello-from-v1\n")
        uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
        devcloud.client().register(uuid, key, name="balena-cli")
        agent = AgentProcess(
            root / "agent",
            uuid=uuid,
            api_key=key,
            api_endpoint=devcloud.url,
            docker_host=engine.host,
            extra={"localMode": True, "listenAddress": address, "listenPort": SUPERVISOR_PORT},
        )
        agent.start()
        agent.wait_api()
        home = root / "home"
        home.mkdir()
        yield CliDevice(address, engine, client, agent, project, base, home)
    finally:
        if agent is not None:
            agent.kill()
        engine.purge()
        remove_tree(root)


@pytest.fixture(autouse=True)
def _agent_loop_not_blocked(cli_device: CliDevice) -> Iterator[None]:
    """The module's agent outlives each test: check its loop for each test here."""
    before = len(cli_device.agent.slow_callbacks())
    yield
    blocked = cli_device.agent.slow_callbacks()[before:]
    assert not blocked, f"the agent's event loop was blocked: {blocked}"


def _fail(cli: Cli, device: CliDevice, what: str) -> str:
    agent = device.agent.log_tail(40)
    return f"{what}\n--- balena CLI ---\n{cli.transcript()}\n--- agent ---\n{agent}"


def test_push_nolive_builds_on_the_device_and_runs_the_built_image(cli_device: CliDevice) -> None:
    cli = cli_device.cli()
    started = time.monotonic()
    done = cli.run(
        "push",
        cli_device.address,
        "--nolive",
        "--detached",
        "--env",
        "GREETING=from the CLI",
        cwd=cli_device.project,
    )
    print(f"balena push --nolive --detached (cold build): {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, _fail(cli, cli_device, f"exit code {done.returncode}")
    built = cli_device.docker.images.get("local_image_main:latest")
    wait_until(
        lambda: (c := cli_device.main_container()) is not None and c.image.id == built.id,
        60,
        message=lambda: _fail(cli, cli_device, "main never ran the image the CLI built"),
    )
    container = cli_device.main_container()
    assert container is not None
    assert container.labels["io.balena.supervised"] == "true"
    assert container.attrs["HostConfig"]["Privileged"] is True  # the CLI's default, unchanged
    wait_until(lambda: b"hello-from-v1" in container.logs(), 30)
    # the legacy io.resin.features.supervisor-api label of the CLI's composition: the host-
    # networked service is told the address the API listens on, and reaches it there
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    address = f"http://{cli_device.address}:{SUPERVISOR_PORT}"
    assert env["BALENA_SUPERVISOR_ADDRESS"] == address
    assert env["GREETING"] == "from the CLI"  # push --env
    code, out = container.exec_run(["wget", "-qO-", f"{address}/ping"])
    assert (code, out) == (0, b"OK"), out


def test_livepush_streams_logs_and_syncs_a_changed_file(cli_device: CliDevice) -> None:
    msg = cli_device.project / "msg.txt"
    # new content: a new image, so the service (re)starts under the live session and says it
    msg.write_text("live-one\n")
    cli = cli_device.cli().start("push", cli_device.address, cwd=cli_device.project)
    try:
        wait_until(
            lambda: cli.printed("Device state settled") and cli.logged("main", "live-one"),
            120,
            message=lambda: _fail(cli, cli_device, "no live session with the service's logs"),
        )
        assert cli.printed("Watching for file changes")
        # the CLI's file watcher starts after "Device state settled" without saying when it is
        # ready: save again every few seconds, as a user would, until the change arrives
        saved = [0.0]

        def arrived() -> bool:
            if time.monotonic() - saved[0] > 5:
                msg.write_text("live-two\n")
                saved[0] = time.monotonic()
            return cli_device.exec_cat("/msg.txt") == "live-two"

        wait_until(
            arrived,
            120,
            message=lambda: _fail(cli, cli_device, "the changed file never reached the container"),
        )
        # livepush restarts the service, which says the new content; its log reaches the CLI
        wait_until(
            lambda: cli.logged("main", "live-two"),
            30,
            message=lambda: _fail(cli, cli_device, "the new log line never reached the CLI"),
        )
        # a changed Dockerfile: the CLI rebuilds, removes the container itself, posts the
        # target again and waits for the device to settle on a new container
        before = cli_device.main_container()
        (cli_device.project / "Dockerfile").write_text(
            dockerfile(cli_device.base, say_first="dockerfile-two")
        )
        wait_until(
            lambda: cli.logged("main", "dockerfile-two"),
            120,
            message=lambda: _fail(cli, cli_device, "the rebuilt service never ran"),
        )
        after = cli_device.main_container()
        assert after is not None and before is not None and after.id != before.id
        assert after.image.id == cli_device.docker.images.get("local_image_main:latest").id
        assert not cli.printed("error rebuilding"), cli.transcript()
        assert cli.proc is not None and cli.proc.poll() is None, "the live session ended"
    finally:
        cli.stop()
        (cli_device.project / "Dockerfile").write_text(dockerfile(cli_device.base))


def test_logs_streams_the_services_output(cli_device: CliDevice) -> None:
    if cli_device.main_container() is None:  # run alone: push first
        pushed = cli_device.cli().run(
            "push", cli_device.address, "--nolive", "--detached", cwd=cli_device.project
        )
        assert pushed.returncode == 0, "\n".join(pushed.stdout.splitlines()[-40:])
    wait_until(lambda: cli_device.main_container() is not None, 60)
    cli = cli_device.cli().start("device", "logs", cli_device.address, cwd=cli_device.home)
    try:
        marker = f"said-{uuidlib.uuid4().hex[:8]}"

        # written while the CLI streams: say it again until the CLI shows it (it connects
        # some time after it starts)
        def said() -> bool:
            container = cli_device.main_container()
            if container is not None:
                with contextlib.suppress(docker.errors.APIError):
                    container.exec_run(["sh", "-c", f"echo {marker} > /proc/1/fd/1"])
            return cli.printed(marker)

        wait_until(said, 60, interval=1.0, message=lambda: _fail(cli, cli_device, "no log line"))
        line = next(line for line in cli.output if marker in line)
        assert "[main]" in line, line  # shown as the service's
    finally:
        cli.stop(grace=2.0)


def _text(output: bytes | str | None) -> str:
    """What a timed-out process printed (bytes, even with text=True)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""
