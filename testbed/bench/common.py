"""Small helpers shared by the benchmarks: /proc readings and summary statistics."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
DAY_S = 86_400.0


def rss_mb(pid: int) -> float:
    """VmRSS of `pid` in MB (MiB, as /proc counts kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """utime + stime of `pid` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method: a value that was measured."""
    if not values:
        raise ValueError("percentile of nothing")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    """median, p95, min and max of `values`, rounded."""
    return {
        "median": round(statistics.median(values), digits),
        "p95": round(percentile(values, 95), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def per_day(count: float, window_s: float) -> float:
    """A count seen over `window_s` seconds, scaled to a day."""
    if window_s <= 0:
        raise ValueError("window must be positive")
    return count * DAY_S / window_s


def mean_poll_interval_s(interval_s: float) -> float:
    """The agent's mean time between polls at `interval_s`: it adds a uniform jitter of
    0..min(60 s, 10 %) (agent.cloud.poller), so half of that on average."""
    return interval_s + min(60.0, interval_s * 0.1) / 2
