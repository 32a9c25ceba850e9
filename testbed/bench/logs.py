"""Cloud logs (issue 13): the agent's CPU per 1,000 log lines shipped, and the bytes on the
wire per 1,000 lines (gzip) beside their raw NDJSON size.

One service prints typical application lines (a level, a worker, a request path with ids, a
status and a duration; ≈ 75 characters) in bursts every 0.1 s once /tmp/go exists, at 50, 200
and 1,000 lines a second (the rate limit raised above it, probation off, for the run).
The agent's CPU (its threads' time on a CPU, /proc/…/schedstat, to the nanosecond; utime +
stime in 10 ms ticks beside it as `_ticks`) is read over a quiet window (the service waiting)
and over a logging window of the same length; the difference is what shipping the lines cost.
The wire bytes are what the agent sent through a counting proxy in front of the devcloud
(HTTP headers and chunk framing included, polls at 15 minutes so none fall in the window); the
raw bytes are the NDJSON the devcloud decoded, and the text the service printed.
"""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from devcloud.client import DevCloudClient

from .._util import wait_for
from ..processes import AgentProcess
from ..registry import ThrottledProxy
from ..targets import app, device_target, service
from .common import TICK, cpu_s


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user and system) of the event loop's thread (the main one) and of all the
    others."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = "loop" if task.name == str(pid) else "other threads"
        fields = stat.rsplit(")", 1)[1].split()
        for kind, value in (("user", fields[11]), ("sys", fields[12])):
            key = f"{name} {kind}"
            out[key] = out.get(key, 0.0) + int(value) / TICK
    return out


def run_s(pid: int) -> float:
    """CPU seconds of the live threads of `pid`, to the nanosecond (/proc/…/schedstat: time on
    a CPU): /proc's utime and stime come in 10 ms ticks, 4-5 of them for 1,500 lines."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def thread_wakeups(pid: int) -> dict[str, int]:
    """Voluntary context switches (a thread went to sleep, so it was woken again) of the event
    loop's thread and of all the others: the wake-ups that the per-flush cost is made of."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        name = "loop" if task.name == str(pid) else "other threads"
        for row in status.splitlines():
            if row.startswith("voluntary_ctxt_switches:"):
                out[name] = out.get(name, 0) + int(row.split()[1])
    return out


# lines a second, printed in bursts every 0.1 s (BENCH_LOG_RATES=50,200,1000)
RATES = tuple(int(r) for r in os.environ.get("BENCH_LOG_RATES", "50,200,1000").split(","))
# probation (issue 14) inspects the release's containers every second for 300 s after it is
# done: off here, its engine calls would drown the log channel's CPU in both windows
CONFIG = {"BALENA_DEVICE_AGENT_ROLLBACK": "false"}
FLUSH_MS = os.environ.get("BENCH_LOG_FLUSH_MS")  # config.json logFlushMs (default: the agent's)
LOGGER = (
    "trap 'exit 0' TERM; while [ ! -e /tmp/go ]; do sleep 0.2; done; i=0; "
    "while [ $i -lt {count} ]; do "
    "j=0; while [ $j -lt {burst} ]; do i=$((i+1)); j=$((j+1)); "
    'echo "INFO [worker-$((i % 4))] GET /api/v1/items/$((i * 7919 % 100000))?user=$((i % 977)) '
    '-> 200 in $((i % 97)) ms (req $i)"; done; sleep 0.1; done; '
    "while true; do sleep 1; done"
)


def measure(
    cloud_url: str, engine_host: str, ref: str, root: Path, window: float, log: Callable[..., None]
) -> dict[str, Any]:
    """Each of RATES in turn, with a fresh agent."""
    out: dict[str, Any] = {}
    for rate in RATES:
        out[f"{rate}_lines_per_s"] = measure_rate(
            cloud_url, engine_host, ref, root / str(rate), window, rate, log
        )
    return out


def measure_rate(
    cloud_url: str,
    engine_host: str,
    ref: str,
    root: Path,
    window: float,
    rate: int,
    log: Callable[..., None],
) -> dict[str, Any]:
    cloud = DevCloudClient(cloud_url)
    uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
    cloud.register(uuid, key, name="bench-logs")
    root.mkdir(parents=True, exist_ok=True)
    count = int(window * rate)
    script = LOGGER.replace("{burst}", str(rate // 10)).replace("{count}", str(count))
    command = ["/bin/sh", "-c", script]
    services = {"logger": service(ref, service_id=1, image_id=1, command=command)}
    logs_app = app(app_id=9, name="logs", release_uuid="r1", release_id=1, services=services)
    cloud.set_target(uuid, device_target({"logs": logs_app}, config=CONFIG))
    proxy = ThrottledProxy(cloud_url.removeprefix("http://")).start()
    agent = AgentProcess(
        root, uuid=uuid, api_key=key, api_endpoint=f"http://{proxy.address}",
        docker_host=engine_host, poll_interval_ms=900_000,
        extra={
            "logRateLimit": 2 * rate, "logRateBurst": 4 * rate,
            **({"logFlushMs": int(FLUSH_MS)} if FLUSH_MS else {}),
        },
    )  # fmt: skip
    out: dict[str, Any] = {
        "window_s": window, "lines_per_s_offered": rate, "flush_ms": FLUSH_MS or "default",
    }  # fmt: skip
    try:
        agent.start()
        wait_for("the logger running", 300, lambda: agent.events_named("update_status_reported"))
        wait_for("the first log lines", 60, lambda: cloud.logs(uuid)["received"] > 0)
        time.sleep(5)  # the start-up's own lines out of the way
        pid = agent.pid
        assert pid is not None
        c0, r0, t0 = cpu_s(pid), run_s(pid), time.monotonic()
        time.sleep(window)
        quiet, quiet_run = cpu_s(pid) - c0, run_s(pid) - r0
        quiet_s = time.monotonic() - t0
        before = cloud.logs(uuid)
        up0 = proxy.bytes_up
        client = docker.DockerClient(base_url=engine_host)
        (container,) = client.containers.list(filters={"label": "io.balena.service-name=logger"})
        c0, t0, th0, w0 = cpu_s(pid), time.monotonic(), thread_cpu(pid), thread_wakeups(pid)
        r0 = run_s(pid)
        container.exec_run(["touch", "/tmp/go"])
        wait_for(
            "every line in the cloud",
            window * 4 + 60,
            lambda: cloud.logs(uuid)["received"] - before["received"] >= count,
        )
        busy, busy_run = cpu_s(pid) - c0, run_s(pid) - r0
        busy_s = time.monotonic() - t0
        th1, w1 = thread_cpu(pid), thread_wakeups(pid)
        out["cpu_s_by_thread"] = {
            k: round(v - th0.get(k, 0.0), 2) for k, v in th1.items() if v - th0.get(k, 0.0) > 0
        }
        out["wakeups_per_s_by_thread"] = {
            k: round((v - w0.get(k, 0)) / busy_s, 1) for k, v in w1.items()
        }
        after = cloud.logs(uuid)
        lines = after["received"] - before["received"]
        wire = proxy.bytes_up - up0
        raw = after["raw_bytes"] - before["raw_bytes"]
        text = sum(len(str(x.get("message", ""))) + 1 for x in after["lines"][-1000:])
        text_per_line = text / min(1000, len(after["lines"]))
        client.close()
        per_k = 1000.0 / lines if lines else 0.0
        out.update(
            lines_shipped=lines,
            lines_per_s=round(lines / busy_s, 1),
            busy_s=round(busy_s, 1),
            cpu_quiet_s_per_s=round(quiet_run / quiet_s, 5),
            cpu_busy_s=round(busy_run, 4),
            cpu_ms_per_1000_lines=round(
                (busy_run - quiet_run * busy_s / quiet_s) * 1000 * per_k, 2
            ),
            cpu_ms_per_1000_lines_gross=round(busy_run * 1000 * per_k, 2),
            cpu_ms_per_1000_lines_ticks=round((busy - quiet * busy_s / quiet_s) * 1000 * per_k, 2),
            wire_bytes_per_1000_lines=round(wire * per_k),
            ndjson_bytes_per_1000_lines=round(raw * per_k),
            text_bytes_per_1000_lines=round(text_per_line * 1000),
            wire_vs_ndjson=round(wire / raw, 3) if raw else None,
            wire_vs_text=round(wire / (text_per_line * lines), 3) if lines else None,
        )
        out["load_average"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        log(f"logs at {rate} lines/s: {out}")
        agent.stop()
    finally:
        agent.kill()
        proxy.stop()
    return out
