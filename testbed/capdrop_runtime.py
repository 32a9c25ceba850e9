"""An OCI runtime wrapper for the test bed's engines: runc, minus the capabilities this machine
cannot grant.

A privileged container asks runc for every capability the engine knows; where the machine's
bounding set lacks one (a VM without CAP_SYS_RESOURCE, say), runc fails with "unable to apply
caps". Registered with dockerd (`--add-runtime NAME=WRAPPER`, `--default-runtime NAME`; see
PrivateEngine's `cap_wrapper`), this drops exactly those capabilities from the container's
spec — `create --bundle DIR` (DIR/config.json) and `exec --process FILE` — and then execs runc
with the same arguments. Nothing else in the spec changes: the target is never altered.

Run as `python3 capdrop_runtime.py RUNC ARGS...` (the engine's generated wrapper script does).
Standard library only: the shim starts it with a bare environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# linux/capability.h, in bit order (0..40)
CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


def bounding_set(status: str) -> int:
    """CapBnd from /proc/self/status text."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split(":", 1)[1].strip(), 16)
    raise ValueError("no CapBnd line")


def missing_capabilities(bounding: int) -> frozenset[str]:
    """The capabilities this process's bounding set lacks (those it can't hand a container)."""
    return frozenset(name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1)


def strip_capabilities(process: dict[str, Any], missing: frozenset[str]) -> bool:
    """Remove `missing` from an OCI process's capability sets; True if anything changed."""
    caps = process.get("capabilities")
    if not isinstance(caps, dict):
        return False
    changed = False
    for kind, names in caps.items():
        if isinstance(names, list):
            kept = [name for name in names if name not in missing]
            if len(kept) != len(names):
                caps[kind] = kept
                changed = True
    return changed


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _edit(path: Path, missing: frozenset[str], *, bundle: bool) -> None:
    doc = json.loads(path.read_text())
    process = doc.get("process") if bundle else doc
    if isinstance(process, dict) and strip_capabilities(process, missing):
        path.write_text(json.dumps(doc))


def main(argv: list[str]) -> None:
    runc, args = argv[0], argv[1:]
    missing = missing_capabilities(bounding_set(Path("/proc/self/status").read_text()))
    if missing:
        command = next((a for a in args if a in ("create", "run", "exec")), None)
        if command in ("create", "run"):
            bundle = _option(args, "--bundle") or _option(args, "-b") or "."
            _edit(Path(bundle) / "config.json", missing, bundle=True)
        elif command == "exec":
            process_file = _option(args, "--process") or _option(args, "-p")
            if process_file:
                _edit(Path(process_file), missing, bundle=False)
    os.execv(runc, [runc, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
