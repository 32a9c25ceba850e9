"""`device-agent` command line: run the agent; status, update and logs talk to its local API."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from agent import __version__

DEFAULT_CONFIG = Path("/mnt/boot/config.json")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="device-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"device-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    run.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="config.json (balena's shape plus dataDir, dockerHost, lockDir)",
    )
    run.add_argument("--log-level", default="info")
    run.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    for name, text in (
        ("status", "what the device is doing: heartbeat, tunnel, apps, update status"),
        ("update", "poll the cloud and apply now (the instant update)"),
        ("logs", "follow the services' logs (and the agent's messages)"),
        ("diagnose", "check DNS, API, clock, engine, disk, tunnel, locks; name the broken link"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--config", type=Path, default=DEFAULT_CONFIG, help="the agent's config.json"
        )
        if name in ("status", "diagnose"):
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        elif name == "update":
            cmd.add_argument("--force", action="store_true", help="override update locks")
        elif name == "logs":
            cmd.add_argument("service", nargs="?", help="only this service")
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


def _load_structlog_without_rich() -> None:
    """Import structlog with `rich` hidden. structlog's dev renderer imports rich (and with it
    pygments) whenever it is installed, for pretty tracebacks in a terminal: ≈ 3.5 MB held for
    the agent's whole life, where it logs JSON lines. rich is no dependency of the agent (a
    device doesn't have it; a developer's venv does), and stays importable for anyone else."""
    if "structlog" in sys.modules:
        return
    before = sys.modules.get("rich", _ABSENT)
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog  # noqa: F401
    finally:
        if before is _ABSENT:
            del sys.modules["rich"]
        else:
            sys.modules["rich"] = before  # type: ignore[assignment]


_ABSENT = object()


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    _load_structlog_without_rich()
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
    if args.command == "diagnose":
        from agent.diagnostics import diagnose

        try:
            return diagnose(args.config, args.json)
        except AgentError as exc:
            print(f"device-agent: {exc}", file=sys.stderr)
            return 2
    from agent import cli_commands

    try:
        api = cli_commands.LocalApi(args.config)
        if args.command == "status":
            return cli_commands.status(api, args.json)
        if args.command == "update":
            return cli_commands.update(api, args.force)
        return cli_commands.logs(api, args.service)
    except AgentError as exc:
        print(f"device-agent: {exc}", file=sys.stderr)
        return 2
