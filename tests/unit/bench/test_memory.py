"""The memory bench's helpers (testbed/bench/memory.py): floors side by side, and the
tracemalloc comparison that names where memory grew."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from testbed.bench import memory

KEEP: list[bytes] = []


def grow(n: int) -> None:
    for _ in range(n):
        KEEP.append(bytes(1000))  # the line a leak hunt must name


def test_compare_names_the_line_that_grew_and_the_callers(tmp_path):
    tracemalloc.start(10)
    try:
        grow(10)
        before = tmp_path / "a.tm"
        tracemalloc.take_snapshot().dump(str(before))
        grow(500)
        after = tmp_path / "b.tm"
        tracemalloc.take_snapshot().dump(str(after))
    finally:
        tracemalloc.stop()
        KEEP.clear()
    report = memory.compare(before, after, top=5)
    top = report["top_sites"][0]
    assert top["site"].endswith(
        f"tests/unit/bench/test_memory.py:{grow.__code__.co_firstlineno + 2}"
    )
    assert top["count_diff"] >= 500 and top["size_diff_kb"] >= 500 * 1000 / 1024
    assert report["traced_growth_kb"] >= 480


def test_side_by_side_reads_the_floors_in_fresh_interpreters():
    out = memory.side_by_side(os.getpid(), reps=1)
    assert out["bare_rss_mb"] > out["bare_clean_rss_mb"] > 20  # aiohttp & co. are big
    ratio = out["agent_rss_mb"] / out["bare_clean_rss_mb"]  # of rounded MB: ± 0.01
    assert out["ratio_to_bare_clean"] == pytest.approx(ratio, abs=0.01)
    assert out["target_met_bare"] == (out["ratio_to_bare"] <= memory.TARGET_RATIO)
    assert len(out["samples"]["agent"]) == 2 and len(out["samples"]["bare"]) == 1
