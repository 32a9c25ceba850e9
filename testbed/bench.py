"""Benchmarks of the agent, natively and as the arm64 container under QEMU (docs/benchmarks.md).

    scripts/bench [--mode native|arm64|both] [--window 120]

For each mode, on a private engine + registry + devcloud: start to first heartbeat (the
devcloud's first target-state GET after the launch), resident memory idle and peak during an
update (a 24 MiB image), and CPU seconds per idle hour — measured over `--window` seconds at the
default 15-minute poll interval and extrapolated. Under QEMU the process measured is the
emulator running the agent's Python: its memory includes QEMU's own and its translation cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import docker

from devcloud.client import DevCloudClient

from . import PrivateEngine, Registry, publish, rootfs
from ._util import wait_for
from .container_agent import ContainerAgent
from .image import build
from .processes import AgentProcess, DevCloudProcess
from .targets import app, device_target, service

APP = "benchapp"
TICK = os.sysconf("SC_CLK_TCK")


def _target(image: str, release_uuid: str, release_id: int, poll_ms: int) -> dict[str, Any]:
    services = {"main": service(image, service_id=1, image_id=release_id)}
    return device_target(
        {
            APP: app(
                app_id=7,
                name="bench",
                release_uuid=release_uuid,
                release_id=release_id,
                services=services,
            )
        },
        config={"BALENA_SUPERVISOR_POLL_INTERVAL": str(poll_ms)},
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _status(cloud: DevCloudClient, uuid: str) -> tuple[str | None, str | None]:
    entry = cloud.device(uuid)["apps_update_status"].get(APP) or {}
    return entry.get("release_uuid"), entry.get("status")


def measure(
    agent: AgentProcess, cloud: DevCloudClient, refs: dict[str, str], window: float
) -> dict[str, Any]:
    uuid = agent.uuid
    cloud.set_target(uuid, _target(refs["v1"], "r1", 1, 1000))
    launched = time.time()
    agent.start()
    wait_for("the first poll", 300, lambda: cloud.device(uuid)["polls"])
    first = cloud.device(uuid)["polls"][0]["t"] - launched
    wait_for("r1 done", 300, lambda: _status(cloud, uuid) == ("r1", "done"))
    pid = _pid(agent)
    # an update: the peak while a 24 MiB image downloads and the container is replaced
    cloud.set_target(uuid, _target(refs["v2"], "r2", 2, 1000))
    peak = 0.0
    deadline = time.monotonic() + 300
    while _status(cloud, uuid) != ("r2", "done") and time.monotonic() < deadline:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.1)
    # idle at the default poll interval
    cloud.set_target(uuid, _target(refs["v2"], "r2", 2, 900_000))
    wait_for("the 15-min interval", 60, lambda: agent.events_named("config_changed"))
    time.sleep(10)
    idle = rss_mb(pid)
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(window)
    per_hour = (cpu_s(pid) - c0) / (time.monotonic() - t0) * 3600
    agent.stop()
    return {
        "first_heartbeat_s": round(first, 2),
        "rss_idle_mb": round(idle, 1),
        "rss_update_peak_mb": round(peak, 1),  # sampled every 0.1 s
        "cpu_s_per_idle_hour": round(per_hour, 1),
        "window_s": window,
    }


def _pid(agent: AgentProcess) -> int:
    if isinstance(agent, ContainerAgent):
        out = agent.docker("inspect", "--format", "{{.State.Pid}}", agent.name).stdout
        return int(out.strip())
    assert agent.pid is not None
    return agent.pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["native", "arm64", "both"], default="both")
    parser.add_argument("--window", type=float, default=120.0, help="idle CPU window (s)")
    args = parser.parse_args(argv)
    roots = [Path(tempfile.mkdtemp(prefix=p, dir="/tmp")) for p in ("da-e-", "da-r-", "da-c-")]
    engine, registry = PrivateEngine(roots[0]), Registry(roots[1])
    cloud_proc = DevCloudProcess(roots[2])
    arm = rootfs.arch("aarch64")
    mounted = False
    results: dict[str, Any] = {}
    try:
        engine.start()
        registry.start()
        cloud_proc.start()
        client = docker.DockerClient(base_url=engine.host, timeout=1800)
        refs = {
            v: publish(client, registry, "bench/main", v, marker=v, payload_mb=mb).ref_by_digest
            for v, mb in (("v1", 1), ("v2", 24))
        }
        cloud = cloud_proc.client()
        modes = ["native", "arm64"] if args.mode == "both" else [args.mode]
        for mode in modes:
            uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
            cloud.register(uuid, key, name=f"bench-{mode}")
            root = Path(tempfile.mkdtemp(prefix="da-b-", dir="/tmp"))
            agent: AgentProcess
            if mode == "native":
                agent = AgentProcess(
                    root, uuid=uuid, api_key=key, api_endpoint=cloud_proc.url,
                    docker_host=engine.host,
                )  # fmt: skip
            else:
                mounted = rootfs.ensure_binfmt(arm) or mounted
                tag, seconds = build(client, arm)
                results["arm64_image_build_s"] = round(seconds)
                agent = ContainerAgent(
                    root, image=tag, engine_host=engine.host, platform=arm.platform,
                    uuid=uuid, api_key=key, api_endpoint=cloud_proc.url,
                )  # fmt: skip
            try:
                results[mode] = measure(agent, cloud, refs, args.window)
            finally:
                agent.kill()
                shutil.rmtree(root, ignore_errors=True)
            print(json.dumps({mode: results[mode]}), flush=True)
        client.close()
    finally:
        cloud_proc.stop()
        registry.purge()
        engine.purge()
        rootfs.release_binfmt(mounted)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))
    subprocess.run(["uname", "-srm"], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
