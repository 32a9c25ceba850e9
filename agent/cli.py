"""`device-agent` command line: run the agent (more commands come with the local API)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from agent import __version__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="device-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"device-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    run.add_argument(
        "--config",
        type=Path,
        default=Path("/mnt/boot/config.json"),
        help="config.json (balena's shape plus dataDir, dockerHost, lockDir)",
    )
    run.add_argument("--log-level", default="info")
    run.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    return parser


async def _run(config_path: Path) -> int:
    from agent.config import load_device_config
    from agent.daemon import Agent

    config = load_device_config(config_path)
    agent = Agent(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from agent import logs
    from agent.errors import AgentError

    if args.command == "run":
        fmt = args.log_format
        if fmt is None:
            try:
                from agent.config import load_device_config

                fmt = load_device_config(args.config).log_format
            except AgentError:
                fmt = "auto"
        logs.configure(fmt, args.log_level)
        try:
            return asyncio.run(_run(args.config))
        except AgentError as exc:
            print(f"device-agent: {exc}", file=sys.stderr)
            return 2
    return 1
