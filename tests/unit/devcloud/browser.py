"""Headless Chromium for the devcloud page tests. Chromium missing is a failure (scripts/setup
installs the Debian package), never a skip."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,360",
]


def chromium() -> str:
    found = os.environ.get("TESTBED_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("chromium not found — apt-get install chromium (scripts/setup does)")
    return found


async def browse(url: str, *extra: str, timeout: float = 60.0) -> str:
    with tempfile.TemporaryDirectory(prefix="da-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            *extra,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")
