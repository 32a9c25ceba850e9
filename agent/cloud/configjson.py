"""Writing config.json back, as the reference supervisor does when it provisions the device.

The file is rewritten whole and atomically: a temporary file in the same directory, fsync'd,
renamed over the original, then the directory fsync'd, so a power cut leaves either the old or
the new file, never a torn one. Every key we don't change is kept, in its order; the layout
follows the file's own (balenaOS ships it on one line; an indented file stays indented).

Blocking file I/O: call it from a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

_INDENT = re.compile(r"\n([ \t]+)\"")


def _layout(text: str) -> int | str | None:
    """The indent of `text` for json.dumps: None when it is on one line."""
    match = _INDENT.search(text)
    if match is None:
        return None
    indent = match.group(1)
    return len(indent) if set(indent) == {" "} else indent


def render(text: str, updates: Mapping[str, Any], remove: Iterable[str] = ()) -> str:
    """`text` (a config.json) with `updates` set and `remove` deleted, laid out as it was.
    Pure: the part of `update_config_json` that is not I/O."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config.json is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("config.json must hold a JSON object")
    for key in remove:
        data.pop(key, None)
    data.update(updates)
    indent = _layout(text)
    if indent is None:
        out = json.dumps(data, separators=(",", ":"))
    else:
        out = json.dumps(data, indent=indent)
    return out + ("\n" if text.endswith("\n") else "")


def update_config_json(
    path: Path, updates: Mapping[str, Any], remove: Iterable[str] = ()
) -> dict[str, Any]:
    """Set `updates` and delete `remove` in the config.json at `path`, atomically. Returns the
    new content. Raises ConfigError when the file can't be read or written."""
    try:
        text = path.read_text()
        new = render(text, updates, remove)
        mode = path.stat().st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(new)
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
    result: dict[str, Any] = json.loads(new)
    return result
