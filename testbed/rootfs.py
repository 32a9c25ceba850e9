"""Debian root filesystems for the agent's base images, built locally (there is no Docker Hub
here): `debootstrap --variant=minbase` with python3, for the host's arch or a foreign one run
under QEMU (binfmt_misc + qemu-user-static). The tarball is cached outside the repo, keyed by a
hash of everything that goes in, so only the first run pays for the bootstrap."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ._util import TestbedError, TestbedUnavailable, file_lock, find_binary

CACHE_DIR = Path(os.environ.get("DEVICE_AGENT_CACHE", "/var/cache/device-agent"))
SUITE = "bookworm"
MIRROR = os.environ.get("DEVICE_AGENT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python3-venv: the Dockerfile's build stage makes a venv; ca-certificates: https to the cloud
PACKAGES = ("python3", "python3-venv", "ca-certificates")
RECIPE = 2  # bump when the steps below change: a new cache key
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# what each balena arch is called by Debian, Docker and QEMU
_ARCHES = {
    "amd64": ("amd64", "linux/amd64", "x86_64"),
    "aarch64": ("arm64", "linux/arm64", "aarch64"),
    "armv7hf": ("armhf", "linux/arm/v7", "arm"),
}


@dataclass(frozen=True)
class Arch:
    balena: str  # %%BALENA_ARCH%%: amd64, aarch64, armv7hf
    debian: str  # arm64
    platform: str  # linux/arm64
    qemu: str  # aarch64 (binfmt entry qemu-aarch64)

    @property
    def native(self) -> bool:
        return self.balena == host_arch().balena


def arch(name: str) -> Arch:
    for balena, (debian, plat, qemu) in _ARCHES.items():
        if name in (balena, debian, plat):
            return Arch(balena, debian, plat, qemu)
    raise TestbedError(f"unknown arch {name!r} (one of {', '.join(_ARCHES)})")


def host_arch() -> Arch:
    machine = platform.machine()
    return arch({"x86_64": "amd64", "aarch64": "aarch64"}.get(machine, machine))


def cache_key(target: Arch) -> str:
    recipe = {"arch": target.debian, "suite": SUITE, "packages": PACKAGES, "recipe": RECIPE}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def ensure_binfmt(target: Arch) -> bool:
    """Make sure the kernel runs `target` binaries through qemu-user-static. Returns True when
    it had to mount binfmt_misc (the caller unmounts it with `release_binfmt`)."""
    if target.native:
        return False
    find_binary("update-binfmts", "binfmt-support")
    find_binary(f"qemu-{target.qemu}-static", "qemu-user-static")
    mounted = False
    if not (BINFMT_DIR / "register").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
            check=True,
            capture_output=True,
        )
        mounted = True
    entry = BINFMT_DIR / f"qemu-{target.qemu}"
    if not entry.exists() or "enabled" not in entry.read_text():
        run = subprocess.run(
            ["update-binfmts", "--enable", f"qemu-{target.qemu}"], capture_output=True, text=True
        )
        if run.returncode != 0 or not entry.exists():
            raise TestbedUnavailable(f"cannot enable qemu-{target.qemu}: {run.stderr.strip()}")
    if "F" not in _flags(entry):
        # without F (fix binary) the interpreter would have to exist inside every container
        raise TestbedUnavailable(f"{entry} lacks the F flag: reinstall qemu-user-static")
    return mounted


def release_binfmt(mounted: bool) -> None:
    """Undo `ensure_binfmt`'s mount. The kernel keeps the registered entries."""
    if mounted:
        subprocess.run(["umount", str(BINFMT_DIR)], check=False, capture_output=True)


def _flags(entry: Path) -> str:
    for line in entry.read_text().splitlines():
        if line.startswith("flags:"):
            return line.split(":", 1)[1].strip()
    return ""


def rootfs_tarball(target: Arch, cache_dir: Path = CACHE_DIR, log: Path | None = None) -> Path:
    """The cached rootfs.tar.gz for `target`, bootstrapped first if missing."""
    out = cache_dir / f"debian-{SUITE}-{target.debian}-{cache_key(target)}.tar.gz"
    if out.exists():
        return out
    with file_lock(cache_dir / f"{out.name}.lock"):  # another test process may be making it
        if not out.exists():
            _bootstrap(target, out, cache_dir, log)
    return out


def _bootstrap(target: Arch, out: Path, cache_dir: Path, log: Path | None) -> None:
    find_binary("debootstrap", "debootstrap")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"rootfs-{target.debian}-", dir=cache_dir))
    logfile = log or cache_dir / f"debootstrap-{target.debian}.log"
    started = time.monotonic()
    try:
        tree = work / "tree"
        with logfile.open("w") as out_log:
            _run(
                [
                    "debootstrap",
                    f"--arch={target.debian}",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    "--foreign",
                    SUITE,
                    str(tree),
                    MIRROR,
                ],
                out_log,
            )
            # the second stage runs the target's own binaries: natively, or under QEMU
            _run(["chroot", str(tree), "/debootstrap/debootstrap", "--second-stage"], out_log)
        _slim(tree)
        partial = work / "rootfs.tar.gz"
        _run(
            ["tar", "-C", str(tree), "--numeric-owner", "-czf", str(partial), "."],
            None,
        )
        partial.rename(out)
    except subprocess.CalledProcessError as exc:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
        raise TestbedError(f"{exc.cmd[0]} failed ({exc.returncode}); {logfile}:\n{tail}") from exc
    finally:
        _remove_work_dir(work)
    (cache_dir / f"{out.name}.seconds").write_text(f"{time.monotonic() - started:.0f}\n")


def _remove_work_dir(work: Path) -> None:
    """Remove a bootstrap's work dir. A second stage that was killed (a test timeout, Ctrl-C)
    leaves the host's /proc and /sys mounted inside the tree: unmount those first, so the
    removal never walks into them."""
    prefix = str(work.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        inside = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def _run(args: list[str], log: IO[str] | None) -> None:
    subprocess.run(
        args,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if log is None else log,
        stderr=subprocess.STDOUT,
    )


def _slim(tree: Path) -> None:
    """What a container never needs: package caches, docs, man pages, non-C locales."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for child in (tree / sub).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            elif child.name != "lock":
                child.unlink(missing_ok=True)
    locales = tree / "usr/share/locale"
    for child in locales.glob("*"):
        if child.is_dir() and child.name not in ("C.UTF-8", "locale.alias"):
            shutil.rmtree(child, ignore_errors=True)
    shutil.rmtree(tree / "debootstrap", ignore_errors=True)
