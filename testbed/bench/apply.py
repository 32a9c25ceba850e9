"""Apply overhead: the agent applying a new target ÷ the same work done with the docker CLI.

Each of the N services has its own image (a distinct repository, `bench/svcNN`, ~1 MiB of
busybox plus `payload_mb` of random bytes in one layer), so pulls dominate as they do on a
device. Before every run, agent or CLI, the images are removed from the engine so both sides
really download them from the local registry.

- agent: from `set_target` on the devcloud (followed by the instant-update trigger
  `POST /v1/update`, as balena's cloud sends) to the devcloud recording `done` for the release
  (the time the PATCH arrived).
- CLI: `docker network create`, every `docker pull` concurrently, then every `docker create`
  concurrently, then every `docker start` concurrently — the same pulls, network, creates
  (name, labels, lock-dir binds, restart policy, network) and starts, as a quick shell script
  with `xargs -P` would do them.

Runs alternate between the two sides (which side goes first flips every repetition), so the
machine's load hits both alike; the ratio is taken per repetition and summarised.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devcloud.client import DevCloudClient

from .._util import wait_for
from ..processes import AgentProcess
from ..targets import app, device_target, service

APP = "applyapp"
APP_ID = 11
POLL_MS = 900_000  # no scheduled poll during a run: the trigger does it


def target_for(refs: Sequence[str], release: str, release_id: int) -> dict[str, Any]:
    services = {
        f"s{i:02d}": service(ref, service_id=i + 1, image_id=release_id * 100 + i)
        for i, ref in enumerate(refs)
    }
    apps = {}
    if services:
        apps[APP] = app(
            app_id=APP_ID,
            name="apply",
            release_uuid=release,
            release_id=release_id,
            services=services,
        )
    return device_target(apps, config={"BALENA_SUPERVISOR_POLL_INTERVAL": str(POLL_MS)})


class Docker:
    """The docker CLI (/usr/local/bin/docker or whatever is on PATH) against one engine."""

    def __init__(self, host: str) -> None:
        self.host = host

    def argv(self, *args: str) -> list[str]:
        return ["docker", "-H", self.host, *args]

    def run(self, *args: str) -> str:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def parallel(self, commands: Sequence[Sequence[str]]) -> None:
        """Run all of `commands` at once and wait for all; any failure raises."""
        procs = [
            (cmd, subprocess.Popen(self.argv(*cmd), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True))
            for cmd in commands
        ]  # fmt: skip
        errors = []
        for cmd, proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(f"docker {' '.join(cmd)}: {err.strip()}")
        if errors:
            raise RuntimeError("; ".join(errors))

    def image_ids(self, marker: str) -> list[str]:
        out = self.run("images", "--digests", "--format", "{{.Repository}} {{.ID}}")
        return sorted({line.split()[1] for line in out.splitlines() if marker in line})

    def container_ids(self, *filters: str) -> list[str]:
        args = ["ps", "-aq"]
        for f in filters:
            args += ["--filter", f]
        return self.run(*args).split()


def cli_apply(cli: Docker, refs: Sequence[str], lock_root: Path, tag: str) -> float:
    """The CLI baseline; returns seconds."""
    network = f"cli_{tag}_default"
    start = time.monotonic()
    cli.run("network", "create", "--label", "bench=cli", network)
    cli.parallel([("pull", "-q", ref) for ref in refs])
    creates = []
    for i, ref in enumerate(refs):
        lock = lock_root / tag / f"s{i:02d}"
        creates.append(
            (
                "create", "--name", f"cli_{tag}_s{i:02d}", "--network", network,
                "--restart", "always", "--label", "bench=cli",
                "--label", "io.balena.supervised=true",
                "--label", f"io.balena.service-name=s{i:02d}",
                "-v", f"{lock}:/tmp/balena", "-v", f"{lock}:/tmp/resin",
                "-e", f"BALENA_SERVICE_NAME=s{i:02d}", ref,
            )
        )  # fmt: skip
    cli.parallel(creates)
    cli.parallel([("start", f"cli_{tag}_s{i:02d}") for i in range(len(refs))])
    return time.monotonic() - start


def cli_cleanup(cli: Docker, tag: str) -> None:
    ids = cli.container_ids("label=bench=cli")
    if ids:
        cli.run("rm", "-f", *ids)
    for net in cli.run("network", "ls", "-q", "--filter", "label=bench=cli").split():
        for attempt in range(50):  # the engine may still be tearing the endpoints down
            try:
                cli.run("network", "rm", net)
                break
            except RuntimeError:
                if attempt == 49:
                    raise
                time.sleep(0.2)


def remove_images(cli: Docker, marker: str) -> None:
    ids = cli.image_ids(marker)
    if ids:
        cli.run("rmi", "-f", *ids)
    if cli.image_ids(marker):
        raise RuntimeError(f"images {marker} still on the engine")


def _status(cloud: DevCloudClient, uuid: str, since: float) -> tuple[str, str, float] | None:
    entry = cloud.device(uuid, since=since)["apps_update_status"].get(APP)
    if not entry:
        return None
    return entry["release_uuid"], entry["status"], float(entry["since"])


def agent_apply(
    agent: AgentProcess, cloud: DevCloudClient, refs: Sequence[str], release: str, rid: int
) -> float:
    """Agent side; returns seconds from set_target to the cloud recording `done`."""
    start = time.time()
    cloud.set_target(agent.uuid, target_for(refs, release, rid))
    answer = agent.api("POST", "/v1/update", {})
    if answer.status not in (200, 202, 204):
        raise RuntimeError(f"/v1/update answered {answer.status}")
    box: dict[str, float] = {}

    def done() -> bool:
        st = _status(cloud, agent.uuid, start)
        if st is not None and st[:2] == (release, "done"):
            box["t"] = st[2]
            return True
        return False

    wait_for(f"{release} done", 600, done)
    return box["t"] - start


def agent_cleanup(agent: AgentProcess, cloud: DevCloudClient, cli: Docker, marker: str) -> None:
    """An empty target: the agent removes its network and (its own) images. Its containers are
    removed first with `docker rm -f`, which is quicker than the agent's graceful stops one by
    one and not what is measured; the agent reads the engine again on every pass."""
    ids = cli.container_ids(f"label=io.balena.app-id={APP_ID}")
    if ids:
        cli.run("rm", "-f", *ids)
    cloud.set_target(agent.uuid, target_for([], "empty", 1))
    agent.api("POST", "/v1/update", {})
    wait_for(
        "the agent to remove the app",
        300,
        lambda: (
            not cli.container_ids(f"label=io.balena.app-id={APP_ID}") and not cli.image_ids(marker)
        ),
    )


def ratio_summary(rows: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Per-repetition ratios agent ÷ CLI, and medians of each side."""
    ratios = [r["agent_s"] / r["cli_s"] for r in rows]
    return {
        "agent_s_median": round(statistics.median(r["agent_s"] for r in rows), 2),
        "cli_s_median": round(statistics.median(r["cli_s"] for r in rows), 2),
        "ratio_median": round(statistics.median(ratios), 2),
        "ratios": [round(x, 2) for x in ratios],
        "runs": [{k: round(v, 2) for k, v in r.items()} for r in rows],
    }


def measure(
    agent: AgentProcess,
    cloud: DevCloudClient,
    cli: Docker,
    refs: Sequence[str],
    sizes: Sequence[int],
    reps: int,
    marker: str,
    lock_root: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    rid = 1
    for rep in range(reps):
        for n in sizes:
            times: dict[str, float] = {}
            order = ("agent", "cli") if rep % 2 == 0 else ("cli", "agent")
            for side in order:
                remove_images(cli, marker)
                rid += 1
                if side == "agent":
                    times["agent_s"] = agent_apply(agent, cloud, refs[:n], f"rel{rid}", rid)
                    agent_cleanup(agent, cloud, cli, marker)
                else:
                    times["cli_s"] = cli_apply(cli, refs[:n], lock_root, f"r{rid}")
                    cli_cleanup(cli, f"r{rid}")
            rows[n].append(times)
            log(f"apply rep {rep + 1} n={n}: {times} ratio {times['agent_s'] / times['cli_s']:.2f}")
    return {str(n): ratio_summary(r) for n, r in rows.items()}
