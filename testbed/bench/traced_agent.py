"""`python -m testbed.bench.traced_agent run --config …`: the agent exactly as `python -m agent`
(agent.cli.main), plus tracemalloc on a signal, for the soak's comparison of allocation sites.

SIGUSR1: the first one starts tracing ($BENCH_TRACEMALLOC_FRAMES frames, 10 by default); every
one then writes a snapshot to $BENCH_TRACEMALLOC_DIR/snapshot-<k>.tm (k = 0, 1, …; under a
temporary name, then renamed) and tracemalloc's own memory to snapshot-<k>.json. Nothing is
imported or traced before the first signal, so the agent's start is the usual one.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

DIR_ENV = "BENCH_TRACEMALLOC_DIR"
FRAMES_ENV = "BENCH_TRACEMALLOC_FRAMES"
_taken: list[int] = []


def _snapshot(_signum: int, _frame: FrameType | None) -> None:
    import json
    import tracemalloc

    if not tracemalloc.is_tracing():
        tracemalloc.start(int(os.environ.get(FRAMES_ENV, "10")))
    out = Path(os.environ[DIR_ENV])
    k = len(_taken)
    snap = tracemalloc.take_snapshot()
    traced, peak = tracemalloc.get_traced_memory()
    meta = {"traced": traced, "peak": peak, "overhead": tracemalloc.get_tracemalloc_memory()}
    (out / f"snapshot-{k}.json").write_text(json.dumps(meta))
    snap.dump(str(out / f"snapshot-{k}.tmp"))
    os.replace(out / f"snapshot-{k}.tmp", out / f"snapshot-{k}.tm")
    _taken.append(k)


def main() -> int:
    if os.environ.get(DIR_ENV):
        signal.signal(signal.SIGUSR1, _snapshot)
    from agent.cli import main as agent_main

    return agent_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
