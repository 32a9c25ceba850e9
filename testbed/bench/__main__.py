"""Benchmarks of the agent, natively and as the arm64 container under QEMU (docs/benchmarks.md).

    scripts/bench [--mode native|arm64|both] [--only apply,planner,...] [--window 120]
                  [--soak-cycles 10000] [--soak-minutes 10] [--apply-sizes 1,10,50] [--reps 3]

On a private engine + registry + devcloud: apply overhead against the docker CLI (native only),
planner time (pure), start to first heartbeat, resident memory idle and during an update of 10
services, CPU seconds per idle hour and cloud traffic at idle (a 10 s and the default 15-minute
poll interval, measured over `--window` seconds and extrapolated), and memory over a soak of
poll/report cycles (native only). Under QEMU the process measured is the emulator running the
agent's Python: its memory includes QEMU's own and its translation cache.
"""

from __future__ import annotations

import argparse
import contextlib
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

from .. import PrivateEngine, Registry, ThrottledProxy, publish, rootfs
from ..container_agent import ContainerAgent
from ..image import build
from ..processes import AgentProcess, DevCloudProcess
from . import apply as apply_bench
from . import logs as logs_bench
from . import memory
from . import planner as planner_bench
from .device import Device

SECTIONS = ("apply", "planner", "heartbeat", "memory", "idle", "traffic", "soak", "logs")
DEVICE_SECTIONS = ("heartbeat", "memory", "idle", "traffic", "soak")
IMAGE_MARKER = "/bench/svc"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_only(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s): {', '.join(unknown)}")
    return names


def parse_sizes(text: str) -> list[int]:
    sizes = [int(n) for n in text.split(",") if n.strip()]
    if not sizes or min(sizes) < 1 or max(sizes) > 50:
        raise argparse.ArgumentTypeError("sizes must be within 1..50")
    return sizes


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def keep_log(agent: AgentProcess, args: argparse.Namespace, name: str) -> None:
    if args.keep_logs is not None and agent.log_path.exists():
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        shutil.copy(agent.log_path, args.keep_logs / name)


def run_device(
    mode: str, only: list[str], args: argparse.Namespace, env: dict[str, Any]
) -> dict[str, Any]:
    cloud_proc: DevCloudProcess = env["cloud_proc"]
    cloud = cloud_proc.client()
    refs: list[str] = env["refs"]
    uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
    cloud.register(uuid, key, name=f"bench-{mode}")
    root = Path(tempfile.mkdtemp(prefix="da-b-", dir="/tmp"))
    proxy = ThrottledProxy(cloud_proc.url.removeprefix("http://")).start()
    endpoint = f"http://{proxy.address}"
    agent: AgentProcess
    if mode == "native" and "soak" in only and args.soak_trace:
        agent = memory.TracedAgent(
            root, uuid=uuid, api_key=key, api_endpoint=endpoint, docker_host=env["engine"].host
        )
    elif mode == "native":
        agent = AgentProcess(
            root, uuid=uuid, api_key=key, api_endpoint=endpoint, docker_host=env["engine"].host
        )
    else:
        arm = rootfs.arch("aarch64")
        env["binfmt"] = rootfs.ensure_binfmt(arm) or env.get("binfmt", False)
        tag, seconds = build(env["client"], arm)
        env["results"]["arm64_image_build_s"] = round(seconds)
        agent = ContainerAgent(
            root, image=tag, engine_host=env["engine"].host, platform=arm.platform,
            uuid=uuid, api_key=key, api_endpoint=endpoint,
        )  # fmt: skip
    out: dict[str, Any] = {}
    dev = Device(agent, cloud, proxy, log)
    try:
        out["first_heartbeat_s"] = round(dev.start(refs[:10]), 2)
        log(f"{mode}: first heartbeat {out['first_heartbeat_s']} s, load {loadavg()}")
        if "memory" in only:
            out["update_10"] = dev.update(refs[10:20])
            log(f"{mode}: update of 10 services {out['update_10']}")
        if "idle" in only or "memory" in only:
            out["idle_15min"] = dev.idle(900.0, args.window)
            log(f"{mode}: idle at 15 min {out['idle_15min']}, load {loadavg()}")
            if "memory" in only and mode == "native":
                out["idle_vs_floor"] = memory.side_by_side(dev.pid)
                floor = {k: v for k, v in out["idle_vs_floor"].items() if k != "samples"}
                log(f"{mode}: idle RSS side by side with the floor {floor}, load {loadavg()}")
        if "idle" in only or "traffic" in only:
            out["idle_10s"] = dev.idle(10.0, args.window)
            log(f"{mode}: idle at 10 s {out['idle_10s']}, load {loadavg()}")
        if "soak" in only and mode == "native":
            out["soak"] = dev.soak(args.soak_cycles, args.soak_minutes * 60)
            log(f"{mode}: soak {out['soak']}, load {loadavg()}")
            traced = out["soak"].get("tracemalloc")
            if traced:
                log(f"tracemalloc, cycle 1000 → end: {traced['traced_growth_kb']} kB traced growth")
                for row in traced["top_sites"]:
                    log(f"  {row['size_diff_kb']:+8.1f} kB {row['count_diff']:+6d} blocks "
                        f"{row['site']}  via {', '.join(row.get('via', [])) or '-'}")  # fmt: skip
        agent.stop()
    finally:
        agent.kill()
        proxy.stop()
        keep_log(agent, args, f"agent-{mode}.log")
        shutil.rmtree(root, ignore_errors=True)
    return out


def run_apply(args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    cloud_proc: DevCloudProcess = env["cloud_proc"]
    cloud = cloud_proc.client()
    uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
    cloud.register(uuid, key, name="bench-apply")
    cloud.set_target(uuid, apply_bench.target_for([], "empty", 1))
    root = Path(tempfile.mkdtemp(prefix="da-b-", dir="/tmp"))
    agent = AgentProcess(
        root, uuid=uuid, api_key=key, api_endpoint=cloud_proc.url,
        docker_host=env["engine"].host, poll_interval_ms=apply_bench.POLL_MS,
    )  # fmt: skip
    cli = apply_bench.Docker(env["engine"].host)
    try:
        agent.start()
        agent.wait_api(60)
        time.sleep(2)  # the first poll and pass
        result = apply_bench.measure(
            agent, cloud, cli, env["refs"], args.apply_sizes, args.reps, IMAGE_MARKER,
            root / "cli-locks", log,
        )  # fmt: skip
        agent.stop()
        return result
    finally:
        agent.kill()
        with contextlib.suppress(RuntimeError):
            apply_bench.cli_cleanup(cli, "")
        keep_log(agent, args, "agent-apply.log")
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["native", "arm64", "both"], default="native")
    parser.add_argument("--only", type=parse_only, default=list(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")  # fmt: skip
    parser.add_argument("--window", type=float, default=120.0, help="idle CPU/traffic window (s)")
    parser.add_argument("--logs-window", type=float, default=30.0,
                        help="logs: s of logging at 200 lines/s, and of quiet")  # fmt: skip
    parser.add_argument("--soak-cycles", type=int, default=11_000,
                        help="1,000 to warm up + 10,000 measured")  # fmt: skip
    parser.add_argument("--soak-minutes", type=float, default=30.0, help="soak time bound")
    flag = argparse.BooleanOptionalAction
    parser.add_argument(
        "--soak-trace",
        action=flag,
        default=True,
        help="tracemalloc in the soak: top allocation sites, 1000 vs end",
    )
    parser.add_argument(
        "--precompile",
        action=flag,
        default=True,
        help="write the agent's bytecode first, as installed agents have it",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="s between an empty agent's first poll and its RSS reading",
    )
    parser.add_argument("--apply-sizes", type=parse_sizes, default=[1, 10, 50])
    parser.add_argument("--reps", type=int, default=3, help="apply repetitions per size")
    parser.add_argument("--payload-mb", type=float, default=2.0, help="random MiB per image")
    parser.add_argument("--planner-iterations", type=int, default=1000)
    parser.add_argument("--keep-logs", type=Path, help="copy the agents' logs into this dir")
    args = parser.parse_args(argv)
    only: list[str] = args.only
    results: dict[str, Any] = {"args": vars(args)}
    results["machine"] = {"cpus": os.cpu_count(), "load_at_start": loadavg()}
    log(f"bench {only} mode {args.mode}, load {loadavg()}")
    if "planner" in only:
        results["planner"] = planner_bench.measure(args.planner_iterations)
        log(f"planner {results['planner']}")
    needs_device = any(s in only for s in DEVICE_SECTIONS)
    if not needs_device and "apply" not in only and "logs" not in only:
        print(json.dumps(results, indent=2, default=str))
        return 0
    if args.precompile:
        results["machine"]["agent_precompiled"] = memory.precompile()
    roots = [Path(tempfile.mkdtemp(prefix=p, dir="/tmp")) for p in ("da-e-", "da-r-", "da-c-")]
    engine, registry = PrivateEngine(roots[0]), Registry(roots[1])
    cloud_proc = DevCloudProcess(roots[2])
    env: dict[str, Any] = {"engine": engine, "cloud_proc": cloud_proc, "results": results}
    try:
        engine.start()
        registry.start()
        cloud_proc.start()
        client = docker.DockerClient(base_url=engine.host, timeout=1800)
        env["client"] = client
        count = max(args.apply_sizes) if "apply" in only else 0
        count = max(count, 20 if needs_device else 0, 1 if "logs" in only else 0)
        t0 = time.monotonic()
        env["refs"] = [
            publish(client, registry, f"bench/svc{i:02d}", "1", marker=f"svc{i}",
                    payload_mb=args.payload_mb).ref_by_digest
            for i in range(count)
        ]  # fmt: skip
        log(f"published {count} images in {time.monotonic() - t0:.0f} s")
        if "apply" in only:
            results["apply"] = run_apply(args, env)
            log(f"apply {json.dumps(results['apply'])}")
        if needs_device:
            modes = ["native", "arm64"] if args.mode == "both" else [args.mode]
            for mode in modes:
                results[mode] = run_device(mode, only, args, env)
                print(json.dumps({mode: results[mode]}), flush=True)
        if "logs" in only:
            root = Path(tempfile.mkdtemp(prefix="da-b-", dir="/tmp"))
            try:
                results["logs"] = logs_bench.measure(
                    cloud_proc.url, engine.host, env["refs"][0], root, args.logs_window, log
                )
            finally:
                shutil.rmtree(root, ignore_errors=True)
        if "memory" in only:
            results["empty_agents"] = memory.empty_agents(engine.host, cloud_proc, args.settle, log)
        client.close()
    finally:
        cloud_proc.stop()
        registry.purge()
        engine.purge()
        rootfs.release_binfmt(env.get("binfmt", False))
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    results["machine"]["load_at_end"] = loadavg()
    print(json.dumps(results, indent=2, default=str))
    subprocess.run(["uname", "-srm"], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
