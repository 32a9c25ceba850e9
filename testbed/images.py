"""Images built from scratch (static busybox + marker + payload), pushed to the test registry."""

from __future__ import annotations

import functools
import io
import json
import random
import re
import struct
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import docker

from ._util import TestbedError, TestbedUnavailable, find_binary

DEFAULT_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 1; done"]
MIB = 1024 * 1024
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


class HasAddress(Protocol):
    @property
    def address(self) -> str: ...


@dataclass(frozen=True)
class PublishedImage:
    ref_by_digest: str  # 127.0.0.1:PORT/repo@sha256:...
    ref_by_tag: str  # 127.0.0.1:PORT/repo:tag
    digest: str  # sha256:... (manifest digest)
    size: int  # bytes a pull downloads: sum of the (compressed) layer sizes in the manifest
    image_id: str  # id of the image as built locally (gone unless keep_local=True)


@functools.cache
def _busybox() -> tuple[bytes, tuple[str, ...]]:
    """The static busybox binary and its applet names."""
    path = find_binary("busybox", "busybox-static", "/bin")
    data = Path(path).read_bytes()
    if _is_dynamic_elf(data):
        raise TestbedUnavailable(f"{path} is dynamically linked — apt-get install busybox-static")
    listing = subprocess.run([path, "--list"], capture_output=True, text=True, check=True).stdout
    applets = tuple(sorted({a for a in listing.split() if a and "/" not in a and a != "busybox"}))
    return data, applets


def _is_dynamic_elf(data: bytes) -> bool:
    """True if the ELF has a PT_INTERP program header (i.e. needs a dynamic loader)."""
    if data[:4] != b"\x7fELF":
        raise TestbedUnavailable("busybox is not an ELF binary")
    if data[4] != 2 or data[5] != 1:  # only 64-bit little endian is checked
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)  # fmt: skip
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def payload_bytes(marker: str, payload_mb: float) -> bytes:
    """Deterministic, incompressible bytes: same marker and size → same content."""
    return random.Random(f"testbed-payload:{marker}").randbytes(int(payload_mb * MIB))


def rootfs_tar(marker: str, payload_mb: float = 0) -> bytes:
    """An uncompressed, byte-for-byte reproducible tar of a tiny busybox root filesystem."""
    busybox, applets = _busybox()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 0
            info.uname = info.gname = "root"
            info.linkname = link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for directory in ("bin", "data", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin"):
            add(directory, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox)
        for applet in applets:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("usr/bin/env", tarfile.SYMTYPE, 0o777, link="/bin/env")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
        add("marker", tarfile.REGTYPE, 0o644, marker.encode())
        if payload_mb > 0:
            add("payload", tarfile.REGTYPE, 0o644, payload_bytes(marker, payload_mb))
    return buf.getvalue()


def _env_change(key: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or "\n" in value:
        raise ValueError(f"unsupported ENV entry {key!r}={value!r}")
    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'ENV {key}="{quoted}"'


def build_image(
    client: docker.DockerClient,
    repo: str,
    tag: str,
    *,
    marker: str,
    payload_mb: float = 0,
    cmd: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Import a from-scratch image as `repo:tag` into the engine behind `client`; returns its id.

    /marker holds `marker`; /payload (if payload_mb > 0) holds that many MiB of random bytes
    seeded from the marker, so the same marker gives the same layer."""
    changes = [f"CMD {json.dumps(cmd if cmd is not None else DEFAULT_CMD)}"]
    changes += [_env_change(k, v) for k, v in (env or {}).items()]
    client.api.import_image_from_data(
        rootfs_tar(marker, payload_mb), repository=repo, tag=tag, changes=changes
    )
    image_id: str = client.api.inspect_image(f"{repo}:{tag}")["Id"]
    return image_id


def push(
    client: docker.DockerClient, image_ref_local: str, registry_address: str, repo: str, tag: str
) -> str:
    """Tag `image_ref_local` as registry_address/repo:tag, push it, return the by-digest ref."""
    target = f"{registry_address}/{repo}"
    client.api.tag(image_ref_local, target, tag)
    digest: str | None = None
    for event in client.api.push(target, tag=tag, stream=True, decode=True):
        if "error" in event or "errorDetail" in event:
            detail = event.get("errorDetail", {}).get("message") or event.get("error")
            raise TestbedError(f"push of {target}:{tag} failed: {detail}")
        aux = event.get("aux") or {}
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = aux["Digest"]
    if digest is None:
        for repo_digest in client.api.inspect_image(f"{target}:{tag}").get("RepoDigests") or []:
            if repo_digest.startswith(f"{target}@"):
                digest = repo_digest.partition("@")[2]
    if digest is None:
        raise TestbedError(f"push of {target}:{tag} reported no digest")
    return f"{target}@{digest}"


def fetch_manifest(registry_address: str, repo: str, reference: str) -> dict[str, Any]:
    """The image manifest from the registry (direct HTTP, never through an env proxy)."""
    request = urllib.request.Request(
        f"http://{registry_address}/v2/{repo}/manifests/{reference}",
        headers={"Accept": _MANIFEST_TYPES},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        manifest: dict[str, Any] = json.load(response)
    return manifest


def publish(
    client: docker.DockerClient,
    registry: HasAddress | str,
    repo: str,
    tag: str,
    marker: str,
    payload_mb: float = 0,
    cmd: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    keep_local: bool = False,
) -> PublishedImage:
    """Build, push and (unless keep_local) delete the local copy, so a later pull really
    downloads. Same-layer images already in the engine would still short-cut the download."""
    address = registry if isinstance(registry, str) else registry.address
    image_id = build_image(
        client, repo, tag, marker=marker, payload_mb=payload_mb, cmd=cmd, env=env
    )
    ref_by_digest = push(client, image_id, address, repo, tag)
    digest = ref_by_digest.partition("@")[2]
    manifest = fetch_manifest(address, repo, digest)
    size = sum(int(layer["size"]) for layer in manifest.get("layers", []))
    if not keep_local:
        client.images.remove(image_id, force=True)
    return PublishedImage(ref_by_digest, f"{address}/{repo}:{tag}", digest, size, image_id)


def image_ref_via(ref: str, address: str) -> str:
    """Rewrite the registry host:port of `ref` to `address` (e.g. to pull through a proxy)."""
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return f"{address}/{rest}"
    return f"{address}/{ref}"
