"""python -m testbed.watchdog_gaps [--seconds S] [--usec U] — the gaps between an idle agent's
WATCHDOG=1 pings, through a notify socket of our own (as systemd would pass it).

The agent runs as on a device (`python -m agent run`) with nothing to do: no target, a cloud
and an engine that don't answer (its polls fail and are retried; the pings go on regardless).
Prints the median, 99th percentile, max and min gap, in seconds and as a fraction of
WATCHDOG_USEC, and the load average (docs/benchmarks.md, "Watchdog pings").
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from .processes import AgentProcess


def measure(seconds: float, usec: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="da-w-", dir="/tmp"))
    path = str(root / "notify")
    pings: list[float] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(0.5)
        agent = AgentProcess(
            root,
            uuid=uuid.uuid4().hex,
            api_key="unused",
            api_endpoint="http://127.0.0.1:9",  # nobody listens: polls fail, pings go on
            docker_host=f"unix://{root}/no-engine.sock",
            poll_interval_ms=60_000,
        )
        agent.env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(usec)}
        os.environ.pop("WATCHDOG_PID", None)
        agent.start()
        try:
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                try:
                    data = sock.recv(4096).decode()
                except TimeoutError:
                    continue
                if "WATCHDOG=1" in data.splitlines():
                    pings.append(time.monotonic())
        finally:
            agent.stop()
    gaps = sorted(b - a for a, b in itertools.pairwise(pings[2:]))  # past start-up
    deadline = usec / 1e6
    return {
        "pings": len(pings),
        "median_s": statistics.median(gaps),
        "p99_s": gaps[int(0.99 * (len(gaps) - 1))],
        "max_s": gaps[-1],
        "min_s": gaps[0],
        "max_fraction": gaps[-1] / deadline,
        "loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--usec", type=int, default=2_000_000, help="WATCHDOG_USEC")
    args = parser.parse_args()
    result = measure(args.seconds, args.usec)
    print(
        f"WATCHDOG_USEC={args.usec}: {result['pings']:.0f} pings, gaps median "
        f"{result['median_s']:.4f} s, p99 {result['p99_s']:.4f} s, max {result['max_s']:.4f} s "
        f"({result['max_fraction']:.3f} x WATCHDOG_USEC), min {result['min_s']:.4f} s; "
        f"load {result['loadavg_1m']:.2f}"
    )


if __name__ == "__main__":
    main()
