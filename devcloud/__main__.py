"""`python -m devcloud`: serve the devcloud until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from devcloud.connectivity import Connectivity
from devcloud.server import DEFAULT_HOLD_SECONDS, make_app
from devcloud.state import Cloud, Trickle

log = logging.getLogger("devcloud")

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


def _device_arg(value: str) -> tuple[str, str, str | None]:
    """UUID:KEY or UUID:KEY:NAME."""
    parts = value.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(f"expected UUID:KEY[:NAME], got {value!r}")
    name = parts[2] if len(parts) == 3 and parts[2] else None
    return parts[0], parts[1], name


def _trickle_arg(value: str) -> Trickle:
    """CHUNK_BYTES[:PAUSE_MS]."""
    chunk, _, pause = value.partition(":")
    try:
        trickle = Trickle.from_json({"chunk_bytes": int(chunk), "pause_ms": float(pause or 0)})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected CHUNK_BYTES[:PAUSE_MS]: {exc}") from None
    assert trickle is not None
    return trickle


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devcloud", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 = any free port")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument(
        "--device",
        action="append",
        default=[],
        type=_device_arg,
        metavar="UUID:KEY[:NAME]",
        help="register a device at start (repeatable)",
    )
    parser.add_argument(
        "--timeout-hold",
        type=float,
        default=DEFAULT_HOLD_SECONDS,
        help="seconds the 'timeout' fault holds a poll (default %(default)s)",
    )
    parser.add_argument(
        "--wg-interface",
        metavar="NAME",
        help="the cloud's WireGuard interface: its peers' handshakes and traffic judge "
        "cloudlink (sampled every second with `wg show NAME dump`)",
    )
    parser.add_argument(
        "--openvpn-status",
        type=Path,
        metavar="PATH",
        help="the OpenVPN server's status file (status-version 2): common names listed in a "
        "fresh file have cloudlink",
    )
    parser.add_argument(
        "--poll-interval-ms",
        type=int,
        help="the devices' poll interval when their target sets no "
        "BALENA_SUPERVISOR_POLL_INTERVAL (default 900000); judges the heartbeat",
    )
    parser.add_argument(
        "--trickle",
        type=_trickle_arg,
        metavar="CHUNK_BYTES[:PAUSE_MS]",
        help="send answer bodies in pieces of CHUNK_BYTES with PAUSE_MS after each, as over a "
        "slow link (changeable with PUT /admin/trickle)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (requests are logged at INFO)",
    )
    args = parser.parse_args(argv)
    if args.poll_interval_ms is not None and args.poll_interval_ms < 1000:
        parser.error("--poll-interval-ms must be >= 1000")
    return args


def write_port_file(path: Path, port: int) -> None:
    """Write atomically: readers see either no file or the whole port number."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> None:
    cloud = Cloud(trickle=args.trickle)
    for uuid, key, name in args.device:
        cloud.register(uuid, key, name)
    connectivity = Connectivity(
        cloud,
        wg_interface=args.wg_interface,
        openvpn_status=args.openvpn_status,
        poll_interval_ms=args.poll_interval_ms,
    )
    app = make_app(cloud, hold_seconds=args.timeout_hold, connectivity=connectivity)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("devcloud.access"),
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=5.0,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = int(runner.addresses[0][1])
        log.info("listening on http://%s:%d (%d devices)", args.host, port, len(cloud.devices))
        if args.port_file is not None:
            write_port_file(args.port_file, port)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
