"""The agent's container image: render Dockerfile.template for an arch, build it on an engine.

The base image is made locally (no Docker Hub here): the cached debootstrap rootfs of
testbed/rootfs.py imported with `FROM scratch` + `ADD rootfs.tar.gz` by the classic builder,
labelled with the target platform. The dependencies' wheels for the target are fetched on the
host (`pip download --platform …`) into the build context, so the build's RUN steps — under
QEMU for a foreign arch — never touch the network.

    python -m testbed.image render --arch aarch64            # the Dockerfile, on stdout
    python -m testbed.image build --arch aarch64 --host unix:///tmp/da-x/docker.sock
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import docker
import docker.errors

from . import rootfs
from ._util import TestbedError, file_lock

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "Dockerfile.template"
BASE_REPO = "device-agent-base"
AGENT_REPO = "device-agent"
DEFAULT_MACHINE = {
    "amd64": "generic-amd64",
    "aarch64": "generic-aarch64",
    "armv7hf": "raspberrypi3",
}
# the wheel tags a Debian bookworm (glibc 2.36) python 3.11 accepts, for --platform
_WHEEL_PLATFORMS = {
    "amd64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "aarch64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
    "armv7hf": ("manylinux2014_armv7l", "manylinux_2_31_armv7l"),
}
_BUILD_TOOLS = ("pip", "setuptools>=68", "wheel")


def render(template: str, balena_arch: str, machine: str | None = None) -> str:
    """Fill in balena's placeholders as its builder does."""
    machine = machine or DEFAULT_MACHINE.get(balena_arch, balena_arch)
    text = template.replace("%%BALENA_ARCH%%", balena_arch)
    text = text.replace("%%BALENA_MACHINE_NAME%%", machine)
    if "%%" in text:
        raise TestbedError("Dockerfile.template has a placeholder we don't fill in")
    return text


def dependencies() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def fetch_wheels(target: rootfs.Arch, cache_dir: Path = rootfs.CACHE_DIR) -> Path:
    """The target's wheels of every dependency (and of pip's build tools), cached by spec."""
    specs = [*dependencies(), *_BUILD_TOOLS]
    key = hashlib.sha256("\n".join([target.balena, *specs]).encode()).hexdigest()[:12]
    out = cache_dir / f"wheels-{target.balena}-{key}"
    if out.is_dir():
        return out
    with file_lock(cache_dir / f"{out.name}.lock"):  # another test process may be fetching
        if not out.is_dir():
            _download_wheels(specs, target, out, cache_dir)
    return out


def _download_wheels(specs: list[str], target: rootfs.Arch, out: Path, cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache_dir))
    platforms = [a for p in _WHEEL_PLATFORMS[target.balena] for a in ("--platform", p)]
    run = subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--dest", str(partial), "--only-binary=:all:", *platforms,
            "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            *specs,
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if run.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise TestbedError(f"pip download for {target.balena} failed:\n{run.stderr[-2000:]}")
    partial.rename(out)


def make_context(target: rootfs.Arch, dest: Path, machine: str | None = None) -> Path:
    """A build context like the repo's (what balena's builder sees) plus `wheels/`."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "Dockerfile").write_text(render(TEMPLATE.read_text(), target.balena, machine))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, dest / name)
    shutil.copytree(
        REPO_ROOT / "agent", dest / "agent", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(fetch_wheels(target), dest / "wheels")
    return dest


def base_image(client: docker.DockerClient, target: rootfs.Arch) -> str:
    """`device-agent-base:bookworm-ARCH-KEY` on the engine, imported from the cached rootfs."""
    tag = f"{BASE_REPO}:{rootfs.SUITE}-{target.balena}-{rootfs.cache_key(target)}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    tarball = rootfs.rootfs_tarball(target)
    with tempfile.TemporaryDirectory(prefix="da-base-") as tmp:
        context = Path(tmp)
        try:  # docker-py's context tar doesn't follow symlinks: a hard link, or a copy
            os.link(tarball, context / "rootfs.tar.gz")
        except OSError:
            shutil.copyfile(tarball, context / "rootfs.tar.gz")
        (context / "Dockerfile").write_text('FROM scratch\nADD rootfs.tar.gz /\nCMD ["python3"]\n')
        _build(client, context, tag, target.platform)
    return tag


def build(
    client: docker.DockerClient,
    target: rootfs.Arch,
    tag: str | None = None,
    machine: str | None = None,
) -> tuple[str, float]:
    """Render and build the agent's image for `target`; returns (tag, seconds)."""
    mounted = rootfs.ensure_binfmt(target)
    try:
        base = base_image(client, target)
        tag = tag or f"{AGENT_REPO}:{target.balena}"
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="da-ctx-") as tmp:
            context = make_context(target, Path(tmp), machine)
            _build(
                client,
                context,
                tag,
                target.platform,
                {"BASE_IMAGE": base, "PIP_INSTALL_ARGS": "--no-index"},
            )
        return tag, time.monotonic() - started
    finally:
        rootfs.release_binfmt(mounted)


def _build(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    platform: str,
    buildargs: dict[str, str] | None = None,
) -> None:
    """The classic builder (the API's default), so FROM scratch gets `platform`."""
    try:
        client.images.build(
            path=str(context),
            tag=tag,
            platform=platform,
            buildargs=buildargs or {},
            rm=True,
            forcerm=True,
            network_mode="none",
        )
    except docker.errors.BuildError as exc:
        lines = [str(c.get("stream") or c.get("error") or "") for c in exc.build_log]
        raise TestbedError(f"building {tag} failed: {exc}\n{''.join(lines)[-3000:]}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/image", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["render", "build", "rootfs"])
    parser.add_argument("--arch", default=rootfs.host_arch().balena, help="aarch64, amd64, …")
    parser.add_argument("--machine", help="%%BALENA_MACHINE_NAME%% (default: generic-ARCH)")
    parser.add_argument("--host", help="engine socket, e.g. unix:///tmp/da-x/docker.sock")
    parser.add_argument("--tag", help="image tag (default device-agent:ARCH)")
    args = parser.parse_args(argv)
    target = rootfs.arch(args.arch)
    if args.command == "render":
        sys.stdout.write(render(TEMPLATE.read_text(), target.balena, args.machine))
        return 0
    if args.command == "rootfs":
        mounted = rootfs.ensure_binfmt(target)
        try:
            print(rootfs.rootfs_tarball(target))
        finally:
            rootfs.release_binfmt(mounted)
        return 0
    if not args.host:
        parser.error("build needs --host (the engine to build on)")
    client = docker.DockerClient(base_url=args.host, timeout=1800)
    try:
        tag, seconds = build(client, target, args.tag, args.machine)
    finally:
        client.close()
    print(f"{tag} built in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
