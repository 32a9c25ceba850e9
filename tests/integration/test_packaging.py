"""`pip install .` from a clean checkout gives a working `device-agent` command."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pip_install_gives_a_working_console_script(tmp_path):
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(REPO), str(src)], check=True)
    # the working tree may be ahead of HEAD while developing: overlay it
    subprocess.run(
        [
            "cp",
            "-r",
            str(REPO / "agent"),
            str(REPO / "pyproject.toml"),
            str(REPO / "README.md"),
            str(src),
        ],
        check=True,
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = env_dir / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", str(src)], check=True, timeout=300)
    agent = env_dir / "bin" / "device-agent"
    out = subprocess.run([str(agent), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "device-agent 0.1.0"
    module = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "agent", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert module.stdout == out.stdout
    # a bad config is a clear error, not a traceback
    bad = subprocess.run(
        [str(agent), "run", "--config", str(tmp_path / "none.json")], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "config file" in bad.stderr and "Traceback" not in bad.stderr
    # only the agent ships: no test tooling in the installed package set
    site = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-c",
            "import importlib.util as u; print(u.find_spec('devcloud'), u.find_spec('testbed'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert site.stdout.strip() == "None None"
    assert sys.version_info >= (3, 11)
