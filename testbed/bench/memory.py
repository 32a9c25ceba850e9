"""Idle memory against its floor (issue 10): the agent's RSS side by side with a bare interpreter
that imports what the agent can't do without (aiohttp, structlog, docker, tenacity) and does
nothing, and the agent with a WireGuard tunnel configured.

Two floors are measured, both in this venv with the agent's own environment:
- `bare`: `import aiohttp, structlog, docker, tenacity` as it is. In a developer's venv
  structlog then imports `rich` and `pygments` (schemathesis, a dev dependency, brings them);
- `bare_clean`: the same with `rich` unimportable — what a clean install (the device image,
  `pip install .`) has, since rich is no dependency of the agent or of those four.
The agent imports structlog with rich hidden either way (agent.cli), so `bare_clean` is the
honest floor; both ratios are printed.

Bytecode: the environment has PYTHONDONTWRITEBYTECODE=1 and the agent runs from the repo, so
without care it compiles its own sources on every start (≈ 1.3 MB more RSS, the compiler's
garbage) while the floor's packages come precompiled from site-packages. `precompile()` writes
the agent's `__pycache__` first, as `pip install` does for an installed agent.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from devcloud.client import DevCloudClient

from .._util import wait_for
from ..netns import NetLab, WireGuardLink
from ..processes import REPO_ROOT, AgentProcess, DevCloudProcess, _python_env
from .common import rss_mb
from .traced_agent import DIR_ENV as TRACE_DIR_ENV
from .traced_agent import FRAMES_ENV as TRACE_FRAMES_ENV

FLOOR_IMPORTS = "import aiohttp, structlog, docker, tenacity"
HIDE_RICH = "import sys; sys.modules['rich'] = None\n"
FLOORS = {"bare": FLOOR_IMPORTS, "bare_clean": HIDE_RICH + FLOOR_IMPORTS}
TARGET_RATIO = 1.05


def precompile() -> bool:
    """The agent's bytecode in `agent/**/__pycache__` (git-ignored), as an installed package
    has it; an edited source is recompiled by Python when it is imported anyway."""
    return bool(compileall.compile_dir(str(REPO_ROOT / "agent"), quiet=1))


def floor_rss(code: str, settle_s: float = 2.0) -> float:
    """RSS (MB) of a fresh interpreter that ran `code` and then sleeps: same Python, same
    environment and working directory as the agent's."""
    script = code + "\nprint('ready', flush=True)\nimport time\ntime.sleep(600)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=_python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"floor interpreter failed: {proc.communicate(timeout=10)[1]}")
        time.sleep(settle_s)
        return rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)


def side_by_side(agent_pid: int, reps: int = 3) -> dict[str, Any]:
    """The agent's RSS and each floor's, taken alternately `reps` times (the medians): load or
    page-cache changes hit both. Ratios are agent ÷ floor."""
    agent: list[float] = []
    floors: dict[str, list[float]] = {name: [] for name in FLOORS}
    for _ in range(reps):
        agent.append(rss_mb(agent_pid))
        for name, code in FLOORS.items():
            floors[name].append(floor_rss(code))
    agent.append(rss_mb(agent_pid))
    med = {name: _median(values) for name, values in floors.items()}
    out: dict[str, Any] = {"agent_rss_mb": round(_median(agent), 1)}
    for name, value in med.items():
        out[f"{name}_rss_mb"] = round(value, 1)
        ratio = _median(agent) / value
        out[f"ratio_to_{name}"] = round(ratio, 3)
        out[f"target_met_{name}"] = ratio <= TARGET_RATIO
    out["agent_process"] = process_detail(agent_pid)
    out["samples"] = {"agent": agent, **floors}
    return out


def process_detail(pid: int) -> dict[str, float]:
    """The agent's threads and its RSS split into anonymous memory (the heap, Python's arenas,
    thread stacks) and file-backed pages (the interpreter's and extensions' code)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()[0] if value.split() else ""
    return {
        "threads": int(fields.get("Threads", 0)),
        "rss_anon_mb": round(int(fields.get("RssAnon", 0)) / 1024, 1),
        "rss_file_mb": round(int(fields.get("RssFile", 0)) / 1024, 1),
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def pyroute2_cost() -> dict[str, float]:
    """RSS of the agent's imports alone (`agent.daemon`, `agent.cli`), plus pyroute2's WireGuard
    module as the kernel-WireGuard probe loads it, plus the whole of pyroute2 (what importing
    any of it used to cost): the figure for a kernel WireGuard interface, which this machine
    can't create (no wireguard module; the bench's tunnel is wireguard-go, read over UAPI)."""
    base = "from agent.cli import _load_structlog_without_rich as f; f()\nimport agent.daemon\n"
    part = "from agent.connectivity.netlink import _pyroute2_module as m\n"
    part += "m('pyroute2.netlink.generic.wireguard')\n"
    return {
        "agent_imports_mb": round(floor_rss(base), 1),
        "with_wireguard_module_mb": round(floor_rss(base + part), 1),
        "with_all_of_pyroute2_mb": round(floor_rss(base + "import pyroute2\n"), 1),
    }


_WEB = FLOORS["bare_clean"] + "\nimport aiohttp.web"
IMPORT_STEPS = {
    "floor_clean": FLOORS["bare_clean"],
    "with_aiohttp_web": _WEB,
    "with_agent_imports": _WEB + "\nimport agent.daemon, agent.cli",
}


def import_steps(reps: int = 3) -> dict[str, float]:
    """Where an idle agent's RSS goes before it runs: the clean floor, plus the API server
    (`aiohttp.web`), plus the agent's own modules (`agent.daemon`, everything it imports at
    start), each the median of `reps` fresh interpreters. The running agent's RSS minus the
    last is what running costs (threads, state, buffers)."""
    return {
        name: round(_median([floor_rss(code) for _ in range(reps)]), 1)
        for name, code in IMPORT_STEPS.items()
    }


class Tracer:
    """Drives testbed.bench.traced_agent: `mark()` sends SIGUSR1 and waits for the snapshot."""

    def __init__(self, pid: int, directory: Path) -> None:
        self.pid, self.dir, self.count = pid, directory, 0

    def mark(self, timeout: float = 120.0) -> Path:
        path = self.dir / f"snapshot-{self.count}.tm"
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no tracemalloc snapshot {path.name} from the agent")
            time.sleep(0.1)
        self.count += 1
        return path


def _filtered(snap: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snap.filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
            tracemalloc.Filter(False, "*/testbed/bench/traced_agent.py"),
        ]
    )


def compare(before: Path, after: Path, top: int = 12) -> dict[str, Any]:
    """Allocation sites by growth between two snapshots: (site, size and count differences) by
    line, and for the largest few the agent's own frames that led there."""
    old = _filtered(tracemalloc.Snapshot.load(str(before)))
    new = _filtered(tracemalloc.Snapshot.load(str(after)))
    by_line = new.compare_to(old, "lineno")
    by_trace = new.compare_to(old, "traceback")[: top * 10]  # frames: oldest … most recent
    rows: list[dict[str, Any]] = []
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        row: dict[str, Any] = {
            "site": f"{_short(frame.filename)}:{frame.lineno}",
            "size_diff_kb": round(stat.size_diff / 1024, 1),
            "count_diff": stat.count_diff,
            "size_kb": round(stat.size / 1024, 1),
        }
        full = next((t for t in by_trace if t.traceback[-1] == frame), None)
        if full is not None:  # the agent's own frames on the way there, innermost first
            own = [f for f in reversed(full.traceback) if "/agent/" in f.filename]
            row["via"] = [f"{_short(f.filename)}:{f.lineno}" for f in own[:4]]
        rows.append(row)
    total_old = sum(s.size for s in old.statistics("filename"))
    total_new = sum(s.size for s in new.statistics("filename"))
    return {
        "traced_before_mb": round(total_old / 2**20, 2),
        "traced_after_mb": round(total_new / 2**20, 2),
        "traced_growth_kb": round((total_new - total_old) / 1024, 1),
        "top_sites": rows,
    }


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3."):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


EMPTY_POLL_MS = 900_000


def _empty_target() -> dict[str, Any]:
    return {"config": {"BALENA_SUPERVISOR_POLL_INTERVAL": str(EMPTY_POLL_MS)}, "apps": {}}


def _idle_rss(
    agent: AgentProcess, client: DevCloudClient, call: Callable[[Callable[[], Any]], Any],
    settle_s: float, log: Callable[[str], None], label: str,
) -> dict[str, Any]:  # fmt: skip
    launched = time.time()
    agent.start()
    wait_for(
        f"{label}: first poll", 120,
        lambda: call(lambda: client.device(agent.uuid, since=launched)["polls"]),
    )  # fmt: skip
    time.sleep(settle_s)
    changes = agent.events_named("device_status_changed")
    assert agent.pid is not None
    out = side_by_side(agent.pid)
    out["device_status"] = changes[-1].get("status") if changes else None
    log(f"{label}: {json.dumps({k: v for k, v in out.items() if k != 'samples'})}")
    return out


SUPERVISED = {"label": "io.balena.supervised"}


def clear_engine(engine_host: str) -> dict[str, int]:
    """Remove what the bench's earlier devices left on the shared engine — their services'
    containers, the app networks and volumes, the supervisor network — as a fresh device has
    none: an agent started with no apps would otherwise first remove them (a kill and remove
    per service), and its 'idle' RSS would be that of an agent just after an update."""
    client = docker.DockerClient(base_url=engine_host, timeout=120)
    try:
        containers = client.containers.list(all=True, filters=SUPERVISED)
        for container in containers:
            container.remove(force=True)
        networks = client.networks.list(filters=SUPERVISED)
        for network in networks:
            network.remove()
        volumes = client.volumes.list(filters=SUPERVISED)
        for volume in volumes:
            volume.remove(force=True)
        return {"containers": len(containers), "networks": len(networks), "volumes": len(volumes)}
    finally:
        client.close()


def _kill(agent: AgentProcess) -> None:
    agent.kill()


def empty_agents(
    engine_host: str, cloud_proc: DevCloudProcess, settle_s: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """The agent with no apps at a 15-minute poll interval, once without a VPN (on the host,
    against the bench's devcloud) and once with a WireGuard tunnel up (wireguard-go in a
    NetLab: the agent in the device namespace, the devcloud and the tunnel's cloud end in the
    cloud one), each side by side with the floors."""
    out: dict[str, Any] = {"cleared": clear_engine(engine_host)}
    log(f"cleared from the engine before the empty agents: {out['cleared']}")
    client = cloud_proc.client()
    uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
    client.register(uuid, key, name="bench-empty")
    client.set_target(uuid, _empty_target())
    root = Path(tempfile.mkdtemp(prefix="da-b-", dir="/tmp"))
    agent = AgentProcess(
        root, uuid=uuid, api_key=key, api_endpoint=cloud_proc.url, docker_host=engine_host,
        poll_interval_ms=EMPTY_POLL_MS,
    )  # fmt: skip
    agent.record_host = False  # `python -m agent` itself, nothing of the test entry point
    try:
        out["no_vpn"] = _idle_rss(agent, client, lambda f: f(), settle_s, log, "no VPN")
        agent.stop()
    finally:
        agent.kill()
        shutil.rmtree(root, ignore_errors=True)
    NetLab.purge_stale()
    with NetLab() as lab:
        wg = WireGuardLink(lab, keepalive_s=25)  # the usual device keepalive
        proc = DevCloudProcess(lab.root / "devcloud")
        proc.host = lab.cloud_ip
        proc.command_prefix = lab.ns_cmd("cloud", [])
        proc.extra_args = ["--wg-interface", wg.cloud_iface]
        proc.start()
        lab.on_stop(proc.stop)
        lab_client = proc.client()
        uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
        cloud_vpn = {"kind": "wireguard", "public_key": wg.device_public_key, "keepalive_s": 25}
        lab.call_in("cloud", lambda: lab_client.register(uuid, key, "bench-wg", vpn=cloud_vpn))
        lab.call_in("cloud", lambda: lab_client.set_target(uuid, _empty_target()))
        agent = AgentProcess(
            lab.root / "agent", uuid=uuid, api_key=key, api_endpoint=proc.url,
            docker_host=engine_host, poll_interval_ms=EMPTY_POLL_MS,
            extra={"vpn": {"kind": "wireguard", "interface": wg.device_iface}},
        )  # fmt: skip
        agent.command_prefix = lab.ns_cmd("device", [])
        agent.record_host = False
        lab.on_stop(lambda: _kill(agent))

        def in_cloud(fn: Callable[[], Any]) -> Any:
            return lab.call_in("cloud", fn)

        out["wireguard"] = _idle_rss(agent, lab_client, in_cloud, settle_s, log, "WireGuard")
        agent.stop()
    out["import_steps"] = import_steps()
    log(f"import steps: {out['import_steps']}")
    out["kernel_wireguard_imports"] = pyroute2_cost()
    log(f"kernel WireGuard imports: {out['kernel_wireguard_imports']}")
    return out


class TracedAgent(AgentProcess):
    """The agent started as `python -m testbed.bench.traced_agent run --config …` (the same
    `agent.cli.main`, plus tracemalloc snapshots on SIGUSR1 into `trace_dir`)."""

    def __init__(self, *args: Any, trace_frames: int = 10, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace_dir = self.root / "tracemalloc"
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        self.env.update({TRACE_DIR_ENV: str(self.trace_dir), TRACE_FRAMES_ENV: str(trace_frames)})

    def start(self) -> AgentProcess:
        if self.running:
            raise RuntimeError("agent already running")
        self.write_config()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                *self.command_prefix, sys.executable, "-m", "testbed.bench.traced_agent",
                "run", "--config", str(self.config_path),
            ],
            cwd=REPO_ROOT,
            env={**_python_env(), **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self
