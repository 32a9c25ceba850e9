"""A throwaway PKI for the OpenVPN lab, made with the openssl command line: a CA, a server
certificate (serverAuth) and a client certificate (clientAuth) with the device's common name.
EC P-256 keys, so it takes a few tens of milliseconds."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._util import TestbedError, find_binary

DAYS = "2"


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(openssl: str, *args: str, cwd: Path) -> None:
    result = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise TestbedError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _issue(openssl: str, root: Path, name: str, subject: str, usage: str) -> None:
    """`name`.key and `name`.crt, signed by root/ca."""
    ext = root / f"{name}.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyAgreement\n"
        f"extendedKeyUsage={usage}\n"
    )
    _openssl(
        openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=root,
    )  # fmt: skip
    _openssl(
        openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", ext.name, "-out", f"{name}.crt",
        cwd=root,
    )  # fmt: skip


def make_pki(root: Path, common_name: str) -> Pki:
    """Write the CA, server and client material under `root` (created, mode 0700)."""
    if not common_name or "/" in common_name or "," in common_name:
        raise ValueError(f"unusable common name {common_name!r}")
    openssl = find_binary("openssl", "openssl")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    _openssl(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS, "-subj", "/CN=da-lab-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=root,
    )  # fmt: skip
    _issue(openssl, root, "server", "/CN=da-lab-server", "serverAuth")
    _issue(openssl, root, "client", f"/CN={common_name}", "clientAuth")
    return Pki(
        ca_cert=root / "ca.crt",
        server_cert=root / "server.crt",
        server_key=root / "server.key",
        client_cert=root / "client.crt",
        client_key=root / "client.key",
    )
