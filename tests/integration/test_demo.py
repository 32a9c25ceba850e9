"""The README's demo command, run non-interactively: it must deploy both releases and leave
nothing running behind it."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_deploys_two_releases_and_cleans_up():
    result = subprocess.run(
        [str(REPO / "scripts" / "demo"), "--once"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "both releases done" in out
    for status in ("downloading", "downloaded", "applying changes", "done"):
        assert f"release-2  {status}" in out, out[-3000:]
    assert "everything it started is stopped" in out
    leftovers = subprocess.run(["pgrep", "-af", "da-demo-"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
