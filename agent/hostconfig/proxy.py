"""The proxy settings as balenaOS keeps them: `system-proxy/redsocks.conf` (a redsocks config:
a `base` block, the `redsocks` block with the user's fields, an optional `dnsu2t` block) and
`system-proxy/no_proxy` (one address a line), under the boot partition. The file layout and the
merge rules follow the reference supervisor (src/host-config/proxy.ts); these files are only
read and written here, in a worker thread (callers use `asyncio.to_thread`)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import structlog

from agent.hostconfig.parse import PROXY_TYPES

log = structlog.get_logger("agent.hostconfig")

DEFAULT_DNS = ("8.8.8.8", 53)
_BASE = {
    "log_debug": "off",
    "log_info": "on",
    "log": "stderr",
    "daemon": "off",
    "redirector": "iptables",
}
_AUTH = ("login", "password")
_SKIP = ("local_ip", "local_port")
ProxyFields = dict[str, Any]


def _block(label: str, text: str) -> str | None:
    match = re.search(label + r"\s?{([\s\S]+?)}(?=\s|$)", text)
    return match.group(1) if match else None


def _fields(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in re.split(r";?\n", raw):
        if not line.strip():
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if not key or not value or any(key.startswith(s) for s in _SKIP):
            continue
        out[key] = value.replace('"', "") if key in _AUTH else value
    return out


def parse_conf(text: str) -> ProxyFields:
    """redsocks.conf → the user's fields (`type`, `ip`, `port` as a number, `login`...,
    `dns` as `"IP:PORT"`); {} for an empty or malformed file (as the reference reads it)."""
    raw = _block("redsocks", text.strip())
    if raw is None:
        return {}
    fields: ProxyFields = dict(_fields(raw))
    port = fields.get("port")
    if not isinstance(port, str) or not port.isdigit() or fields.get("type") not in PROXY_TYPES:
        log.warning("proxy_conf_invalid", why="the redsocks block's type, ip or port is wrong")
        return {}
    if "ip" not in fields:
        log.warning("proxy_conf_invalid", why="the redsocks block has no ip")
        return {}
    fields["port"] = int(port)
    dns_raw = _block("dnsu2t", text)
    if dns_raw is not None:
        dns = _fields(dns_raw)
        if "remote_ip" in dns and dns.get("remote_port", "").isdigit():
            fields["dns"] = f"{dns['remote_ip']}:{dns['remote_port']}"
    return fields


def _stringify_block(label: str, block: dict[str, Any]) -> str:
    lines = []
    for key, value in block.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if key in _AUTH:
            value = f'"{value}"'
        lines.append(f"\t{key} = {value};")
    return f"{label} {{\n" + "\n".join(lines) + "\n}\n"


def stringify_conf(fields: ProxyFields) -> str:
    """The user's fields → redsocks.conf; "" when there is nothing but (at most) `dns`."""
    if not fields or set(fields) == {"dns"}:
        return ""
    user = {k: v for k, v in fields.items() if k != "dns"}
    blocks = [
        _stringify_block("base", _BASE),
        _stringify_block("redsocks", {**user, "local_ip": "127.0.0.1", "local_port": 12345}),
    ]
    dns = fields.get("dns")
    if dns is True or isinstance(dns, str):
        ip, port = str(dns).rsplit(":", 1) if isinstance(dns, str) else DEFAULT_DNS
        blocks.append(
            _stringify_block(
                "dnsu2t",
                {
                    "remote_ip": ip,
                    "remote_port": int(port),
                    "local_ip": "127.0.0.1",
                    "local_port": 53,
                },
            )
        )
    return "\n".join(blocks)


class ProxyFiles:
    """`{boot}/system-proxy/redsocks.conf` and `.../no_proxy`."""

    def __init__(self, boot_dir: Path) -> None:
        self.dir = boot_dir / "system-proxy"
        self.conf = self.dir / "redsocks.conf"
        self.no_proxy = self.dir / "no_proxy"

    def read(self) -> ProxyFields | None:
        """The proxy as GET shows it, or None when no redsocks.conf exists."""
        try:
            text = self.conf.read_text()
        except FileNotFoundError:
            return None
        fields = parse_conf(text)
        no_proxy = self.read_no_proxy()
        if no_proxy:
            fields["noProxy"] = no_proxy
        return fields

    def read_no_proxy(self) -> list[str]:
        try:
            return [a for a in self.no_proxy.read_text().split("\n") if a]
        except FileNotFoundError:
            return []

    def patch(self, fields: ProxyFields, no_proxy: tuple[str, ...] | None) -> None:
        """Merge `fields` into the stored proxy ({}: remove it) and set no_proxy when given,
        as the reference does (a `{noProxy}`-only patch that changes no_proxy keeps
        redsocks.conf)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        current = self.read() or {}
        current.pop("noProxy", None)
        merged = {**current, **fields} if fields else {}
        no_proxy_changed = False
        if no_proxy is not None:
            before = self.read_no_proxy()
            if no_proxy:
                _write(self.no_proxy, "\n".join(no_proxy))
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.no_proxy.unlink()
            no_proxy_changed = sorted(before) != sorted(no_proxy)
        text = stringify_conf(merged)
        if text:
            _write(self.conf, text)
        elif not no_proxy_changed:
            with contextlib.suppress(FileNotFoundError):
                self.conf.unlink()


def _write(path: Path, text: str) -> None:
    """Atomically (a temp file renamed over the old one, synced: it's the boot partition)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
