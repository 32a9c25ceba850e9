"""The body of `PATCH /v1/device/host-config`, validated as the reference does.

The reference first tries its strict shape and then falls back to a lenient ("legacy") one it
has always accepted: `{"network": {...}}` is required, `network.hostname` must be a string,
`network.proxy` an object whose `dns` (if given) is `"ADDRESS:PORT"` or a boolean; other
proxy fields are taken as they come. Keys of `network` other than `hostname` and `proxy` are
ignored. Anything else is a 400 whose message starts as the reference's does.

Where we are stricter on purpose: a proxy value that isn't a plain string, number or boolean,
or that holds a character which would break the redsocks.conf syntax (`;`, `{`, `}`, `"`, a
line break), is refused too: the reference would write it into the file as it came.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PREFIX = "Could not parse host config input to a valid format:"
_ADDRESS = re.compile(r"^.+:[0-9]+$")
_UNSAFE = re.compile(r'[;{}"\r\n]')
PROXY_TYPES = ("socks4", "socks5", "http-connect", "http-relay")


class HostConfigInvalid(ValueError):
    """The body can't be read as a host configuration (400)."""


@dataclass(frozen=True)
class HostConfigPatch:
    hostname: str | None  # None: leave the hostname alone; "": the uuid's first 7 characters
    proxy: dict[str, str | int | bool] | None  # None: leave the proxy alone; {}: remove it
    no_proxy: tuple[str, ...] | None  # None: leave no_proxy alone

    @property
    def empty(self) -> bool:
        return self.hostname is None and self.proxy is None


def _fail(why: str) -> HostConfigInvalid:
    return HostConfigInvalid(f"{PREFIX} {why}")


def parse(body: Any) -> HostConfigPatch:
    if not isinstance(body, dict) or "network" not in body:
        raise _fail("'network' is required (an object)")
    network = body["network"]
    if not isinstance(network, dict):
        raise _fail(f"'network' must be an object, got {json.dumps(network)[:60]}")
    hostname = network.get("hostname")
    if "hostname" in network and not isinstance(hostname, str):
        raise _fail(f"'network.hostname' must be a string, got {json.dumps(hostname)[:60]}")
    if "proxy" not in network:
        return HostConfigPatch(hostname, None, None)
    proxy = network["proxy"]
    if not isinstance(proxy, dict):
        raise _fail(f"'network.proxy' must be an object, got {json.dumps(proxy)[:60]}")
    fields: dict[str, str | int | bool] = {}
    no_proxy: tuple[str, ...] | None = None
    for key, value in proxy.items():
        if key == "noProxy":
            no_proxy = _no_proxy(value)
        elif key == "dns":
            fields[key] = _dns(value)
        elif key in ("local_ip", "local_port"):
            continue  # the reference sets these itself
        else:
            fields[key] = _value(key, value)
    return HostConfigPatch(hostname, fields, no_proxy)


def _dns(value: Any) -> str | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= 255 and _ADDRESS.match(value):
        return _value("dns", value)  # type: ignore[return-value]
    raise _fail(
        f"'network.proxy.dns' must be a string in the format 'ADDRESS:PORT' or a boolean, "
        f"got {json.dumps(value)[:60]}"
    )


def _no_proxy(value: Any) -> tuple[str, ...]:
    """The reference removes no_proxy for anything but a non-empty list."""
    if not isinstance(value, list):
        return ()
    out = []
    for item in value:
        if not isinstance(item, str) or "\n" in item or "\r" in item:
            raise _fail("'network.proxy.noProxy' must be a list of addresses (strings)")
        out.append(item)
    return tuple(out)


def _value(key: str, value: Any) -> str | int | bool:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key):
        raise _fail(f"'network.proxy' field name {json.dumps(key)[:60]} is not valid")
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str) and not _UNSAFE.search(value) and len(value) <= 1024:
        return value
    raise _fail(
        f"'network.proxy.{key}' must be a string, number or boolean without ; {{ }} \" or "
        f"line breaks, got {json.dumps(value)[:60]}"
    )
