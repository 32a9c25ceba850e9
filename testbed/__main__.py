"""python -m testbed {start,stop,status} DIR — a background engine + registry for manual work.

Layout: DIR/engine (dockerd root), DIR/registry (registry root),
DIR/env (DOCKER_HOST=…, REGISTRY=…).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ._util import TestbedError, remove_tree
from .engine import PrivateEngine
from .registry import Registry


def _parts(directory: Path) -> tuple[PrivateEngine, Registry]:
    registry_root = directory / "registry"
    return PrivateEngine(directory / "engine"), Registry(
        registry_root, _previous_port(registry_root)
    )


def _env_text(engine: PrivateEngine, registry: Registry) -> str:
    return f"DOCKER_HOST={engine.host}\nREGISTRY={registry.address}\n"


def _previous_port(registry_root: Path) -> int:
    try:
        config = (registry_root / "config.yml").read_text()
    except OSError:
        return 0
    match = re.search(r"addr: 127\.0\.0\.1:(\d+)", config)
    return int(match.group(1)) if match else 0


def start(directory: Path) -> int:
    engine, registry = _parts(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not engine.is_running():
        if engine.pid is not None:  # alive but not answering: start over
            engine.stop()
        engine.start()
    if not registry.is_running():
        registry.stop()
        try:
            registry.start()  # on its previous port, if it had one
        except TestbedError:
            registry = Registry(registry.root)  # old port taken meanwhile: pick another
            registry.start()
    text = _env_text(engine, registry)
    (directory / "env").write_text(text)
    sys.stdout.write(text)
    return 0


def stop(directory: Path, purge: bool) -> int:
    engine, registry = _parts(directory)
    registry.stop()
    engine.stop()
    if purge:
        remove_tree(directory)
    else:
        (directory / "env").unlink(missing_ok=True)
    print(f"stopped testbed in {directory}" + (" (purged)" if purge else ""))
    return 0


def status(directory: Path) -> int:
    engine, registry = _parts(directory)
    engine_up, registry_up = engine.is_running(), registry.is_running()
    print(f"engine:   {'running' if engine_up else 'stopped'} pid={engine.pid} {engine.host}")
    address = registry.address if registry_up else "-"
    print(f"registry: {'running' if registry_up else 'stopped'} pid={registry.pid} {address}")
    return 0 if engine_up and registry_up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        command = sub.add_parser(name)
        command.add_argument("dir", type=Path, help="short directory, e.g. /tmp/da-dev")
        if name == "stop":
            command.add_argument("--purge", action="store_true", help="also delete DIR")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    try:
        if args.command == "start":
            return start(directory)
        if args.command == "stop":
            return stop(directory, args.purge)
        return status(directory)
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
