"""Configuration: the device's config.json (balena's shape plus our keys) and the fleet config
vars that arrive in the target state and take effect at run time."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from agent.errors import ConfigError
from agent.model.windows import parse_windows, zone_of

log = structlog.get_logger("agent.config")

DEFAULT_POLL_INTERVAL_MS = 900_000
MIN_POLL_INTERVAL_MS = 1_000
DEFAULT_LISTEN_PORT = 48484
DEFAULT_LOCK_DIR = "/tmp/balena-supervisor/services"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_APPS_JSON_PATH = "/mnt/data/apps.json"  # the reference's $DATA_MOUNTPOINT/apps.json
DEFAULT_BOOTSTRAP_RETRY_DELAY_MS = 30_000


@dataclass(frozen=True)
class DeviceConfig:
    """config.json: fixed for the life of the process."""

    uuid: str
    api_endpoint: str
    device_api_key: str
    device_type: str = "generic-amd64"
    listen_port: int = DEFAULT_LISTEN_PORT
    # config.json `listenAddress`: the one address the local API binds (an IP literal); None:
    # every interface, as the reference
    listen_address: str | None = None
    poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    data_dir: Path = Path("/var/lib/device-agent")
    docker_host: str = DEFAULT_DOCKER_HOST
    lock_dir: Path = Path(DEFAULT_LOCK_DIR)
    max_pull_attempts: int = 5  # failed pulls of one release before it is `aborted`
    api_timeout_s: float = 59.0  # config.json `apiTimeout` (ms): one cloud request at most
    log_format: str = "auto"  # auto | json | console
    local_mode: bool = False  # config.json `localMode`: targets come from the local API only
    clock_sync: str = "probe"  # update windows: probe (adjtimex) | synced | unsynced (tests)
    # config.json `strictApiKeys`: app-scoped API keys may not reboot, shut down, update or
    # change the host config (403); off by default, as on balena (agent/api/access.py)
    strict_api_keys: bool = False
    # config.json `hostBootDir`: where host-config's proxy settings are written
    # (`system-proxy/redsocks.conf`, `system-proxy/no_proxy`; balenaOS: /mnt/boot); None: the
    # data dir's `boot/`
    host_boot_dir: Path | None = None
    # what bridge-networked app containers are told the local API's host is (None: the
    # supervisor network's gateway, engine/supnet.py)
    supervisor_api_host: str | None = None
    device_id: int | None = None  # config.json `deviceId`: the cloud's numeric id (device tags)
    # provisioning (agent/cloud/provision.py): `apiKey` is the fleet's provisioning key, present
    # until the device is registered; `uuid` and `deviceApiKey` are then generated when absent
    provisioning_api_key: str | None = None
    application_id: int | None = None  # config.json `applicationId`
    registered_at: int | None = None  # config.json `registered_at` (ms since the epoch)
    bootstrap_retry_delay_ms: int = DEFAULT_BOOTSTRAP_RETRY_DELAY_MS
    apps_json_path: Path = Path(DEFAULT_APPS_JSON_PATH)  # preloaded target (agent/local/preload)
    config_path: Path | None = None  # where config.json was read from (provisioning writes it)
    # the cloud's registry (host[:port]): pulls from it carry the device's credentials
    registry_endpoint: str | None = None
    # config.json `registryCredentials`: {host: (username, password)} for other registries
    registry_credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def local_api_host(self) -> str:
        """Where a process on the device (or a host-networked container) reaches the local
        API: `listenAddress` when it names one address, else 127.0.0.1."""
        address = self.listen_address
        if address is None or ipaddress.ip_address(address).is_unspecified:
            return "127.0.0.1"
        return address

    @property
    def local_api_url(self) -> str:
        """`device-agent status`'s and `diagnose`'s way to the local API."""
        host = self.local_api_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.listen_port}"


def load_device_config(path: Path, env: Mapping[str, str] | None = None) -> DeviceConfig:
    env = os.environ if env is None else env
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not readable JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")

    def need(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: '{key}' is required (a non-empty string)")
        return value

    provisioning_key = raw.get("apiKey")
    if provisioning_key is not None and (
        not isinstance(provisioning_key, str) or not provisioning_key
    ):
        raise ConfigError(f"{path}: 'apiKey' (the provisioning key) must be a non-empty string")

    def identity(key: str) -> str:
        """uuid and deviceApiKey: generated at start-up when absent and a provisioning key is
        there (as the reference does), else required."""
        if provisioning_key is not None and raw.get(key) in (None, ""):
            return ""
        return need(key)

    def integer(key: str, default: int, minimum: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{path}: '{key}' must be an integer >= {minimum}, got {value!r}")
        return value

    known = {
        "uuid",
        "apiEndpoint",
        "deviceApiKey",
        "deviceType",
        "listenPort",
        "listenAddress",
        "appUpdatePollInterval",
        "dataDir",
        "dockerHost",
        "lockDir",
        "maxPullAttempts",
        "apiTimeout",
        "logFormat",
        "localMode",
        "supervisorApiHost",
        "deviceId",
        "apiKey",
        "applicationId",
        "registered_at",
        "bootstrapRetryDelay",
        "appsJsonPath",
        "registryEndpoint",
        "registryCredentials",
        "strictApiKeys",
        "hostBootDir",
        "clockSync",
    }
    local_mode = raw.get("localMode", False)
    if isinstance(local_mode, str):
        local_mode = local_mode.strip().lower() in _BOOL_TRUE
    if not isinstance(local_mode, bool):
        raise ConfigError(f"{path}: 'localMode' must be true or false")
    strict_api_keys = raw.get("strictApiKeys", False)
    if isinstance(strict_api_keys, str):
        strict_api_keys = strict_api_keys.strip().lower() in _BOOL_TRUE
    if not isinstance(strict_api_keys, bool):
        raise ConfigError(f"{path}: 'strictApiKeys' must be true or false")
    device_id = raw.get("deviceId")
    if device_id is not None:
        device_id = integer("deviceId", 0, 1)
    application_id = raw.get("applicationId")
    if application_id is not None:
        application_id = integer("applicationId", 0, 1)
    elif provisioning_key is not None:
        raise ConfigError(f"{path}: 'applicationId' is required with a provisioning 'apiKey'")
    registered_at = raw.get("registered_at")
    if registered_at is not None:
        registered_at = integer("registered_at", 0, 0)
    clock_sync = str(raw.get("clockSync", "probe"))
    if clock_sync not in ("probe", "synced", "unsynced"):
        raise ConfigError(f"{path}: 'clockSync' must be probe, synced or unsynced")
    log_format = str(raw.get("logFormat", "auto"))
    if log_format not in ("auto", "json", "console"):
        raise ConfigError(f"{path}: 'logFormat' must be auto, json or console")
    return DeviceConfig(
        uuid=identity("uuid"),
        api_endpoint=need("apiEndpoint").rstrip("/"),
        device_api_key=identity("deviceApiKey"),
        device_type=str(raw.get("deviceType", "generic-amd64")),
        listen_port=integer("listenPort", DEFAULT_LISTEN_PORT, 0),
        listen_address=_listen_address(path, raw.get("listenAddress")),
        poll_interval_ms=integer(
            "appUpdatePollInterval", DEFAULT_POLL_INTERVAL_MS, MIN_POLL_INTERVAL_MS
        ),
        data_dir=Path(str(raw.get("dataDir", "/var/lib/device-agent"))),
        docker_host=str(raw.get("dockerHost") or env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST),
        lock_dir=Path(str(raw.get("lockDir", DEFAULT_LOCK_DIR))),
        max_pull_attempts=integer("maxPullAttempts", 5, 1),
        api_timeout_s=integer("apiTimeout", 59_000, 1_000) / 1000.0,
        log_format=log_format,
        local_mode=local_mode,
        clock_sync=clock_sync,
        strict_api_keys=strict_api_keys,
        host_boot_dir=Path(str(raw["hostBootDir"])) if raw.get("hostBootDir") else None,
        supervisor_api_host=str(raw.get("supervisorApiHost") or "") or None,
        device_id=device_id,
        provisioning_api_key=provisioning_key,
        application_id=application_id,
        registered_at=registered_at,
        bootstrap_retry_delay_ms=integer(
            "bootstrapRetryDelay", DEFAULT_BOOTSTRAP_RETRY_DELAY_MS, 100
        ),
        apps_json_path=Path(str(raw.get("appsJsonPath") or DEFAULT_APPS_JSON_PATH)),
        config_path=path,
        registry_endpoint=_registry_endpoint(path, raw),
        registry_credentials=_registry_credentials(path, raw.get("registryCredentials")),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _listen_address(path: Path, value: Any) -> str | None:
    """`listenAddress`: an IPv4/IPv6 literal, or absent/"" for every interface."""
    if value is None or value == "":
        return None
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConfigError(
            f"{path}: 'listenAddress' must be an IP address (or absent: every interface), "
            f"got {value!r}"
        ) from None


_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def registry_host(value: str) -> str:
    """A registry named as in config.json (`registry2.example.com`, `https://host:5000/`) →
    the host[:port] an image reference names it by, lower case; Docker Hub's names → docker.io."""
    text = value.strip()
    host = urlsplit(text if "//" in text else f"//{text}").netloc.rpartition("@")[2].lower()
    return "docker.io" if host in _DOCKER_HUB else host


def default_registry_endpoint(api_endpoint: str) -> str | None:
    """balena's registry lives beside its API: `api.<domain>` → `registry2.<domain>`
    (api.balena-cloud.com → registry2.balena-cloud.com, openBalena's api.X → registry2.X).
    An API elsewhere names no registry."""
    host = (urlsplit(api_endpoint).hostname or "").lower()
    return f"registry2.{host[4:]}" if host.startswith("api.") and len(host) > 4 else None


def _registry_endpoint(path: Path, raw: Mapping[str, Any]) -> str | None:
    if "registryEndpoint" not in raw:
        return default_registry_endpoint(str(raw.get("apiEndpoint", "")))
    value = raw["registryEndpoint"]
    if value is None or value == "":
        return None  # said explicitly: no cloud registry, the device's key goes nowhere
    host = registry_host(value) if isinstance(value, str) else ""
    if not host:
        raise ConfigError(f"{path}: 'registryEndpoint' must be a registry host, got {value!r}")
    return host


def _registry_credentials(path: Path, value: Any) -> dict[str, tuple[str, str]]:
    if value is None:
        return {}
    error = (
        f"{path}: 'registryCredentials' must map registry hosts to "
        '{"username": ..., "password": ...}'
    )
    if not isinstance(value, dict):
        raise ConfigError(error)
    out: dict[str, tuple[str, str]] = {}
    for name, entry in value.items():
        host = registry_host(name)
        user = entry.get("username") if isinstance(entry, dict) else None
        password = entry.get("password") if isinstance(entry, dict) else None
        if not host or not isinstance(user, str) or not user or not isinstance(password, str):
            raise ConfigError(f"{error}; the entry for {name!r} is not")
        out[host] = (user, password)
    return out


@dataclass(frozen=True)
class FleetConfig:
    """Fleet/device config vars from the target's `config`, with their defaults."""

    poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    instant_update_trigger: bool = True
    override_lock: bool = False
    local_mode: bool = False
    connectivity_check: bool = True
    log_control: bool = True  # SUPERVISOR_LOG_CONTROL: device logs go to the cloud
    update_window: str = ""  # DEVICE_AGENT_UPDATE_WINDOW: agent/model/windows.py; "" = none
    update_window_tz: str = ""  # DEVICE_AGENT_UPDATE_WINDOW_TZ: IANA name; "" = TZ / system


_BOOL_TRUE = {"1", "true", "on", "yes"}
_BOOL_FALSE = {"0", "false", "off", "no", ""}

# var suffix -> (field, parser)
_VARS: dict[str, str] = {
    "SUPERVISOR_POLL_INTERVAL": "poll_interval_ms",
    "SUPERVISOR_INSTANT_UPDATE_TRIGGER": "instant_update_trigger",
    "SUPERVISOR_OVERRIDE_LOCK": "override_lock",
    "SUPERVISOR_LOCAL_MODE": "local_mode",
    "SUPERVISOR_CONNECTIVITY_CHECK": "connectivity_check",
    "SUPERVISOR_LOG_CONTROL": "log_control",
    "DEVICE_AGENT_UPDATE_WINDOW": "update_window",
    "DEVICE_AGENT_UPDATE_WINDOW_TZ": "update_window_tz",
}


def parse_bool(value: str) -> bool:
    """A config var's boolean: 1/true/on/yes, 0/false/off/no or empty (ValueError else)."""
    low = value.strip().lower()
    if low in _BOOL_TRUE:
        return True
    if low in _BOOL_FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (use 1/0, true/false)")


def _parse_interval(value: str) -> int:
    try:
        ms = int(value.strip())
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a whole number of milliseconds") from exc
    if ms < MIN_POLL_INTERVAL_MS:
        raise ValueError(f"{ms} ms is below the minimum of {MIN_POLL_INTERVAL_MS} ms")
    return ms


class _HoldError(ValueError):
    pass


def _parse_value(attr: str, raw: str) -> Any:
    if attr == "poll_interval_ms":
        return _parse_interval(raw)
    if attr in ("update_window", "update_window_tz"):
        check: Callable[[str], object] = parse_windows if attr == "update_window" else zone_of
        try:
            check(raw)
        except ValueError as exc:  # WindowError too
            raise _HoldError(str(exc)) from exc
        return raw.strip()
    return parse_bool(raw)


def apply_config_vars(
    previous: FleetConfig, config_vars: Mapping[str, str], default_interval_ms: int
) -> tuple[FleetConfig, list[str]]:
    """Fold the target's config vars into a FleetConfig.

    Unset vars fall back to the defaults; a bad value keeps the previous value and yields an
    error message (returned, for the log and the API). `BALENA_` wins over `RESIN_`.
    """
    values: dict[str, Any] = {}
    errors: list[str] = []
    defaults = FleetConfig(poll_interval_ms=default_interval_ms)
    for suffix, attr in _VARS.items():
        raw = config_vars.get(f"BALENA_{suffix}")
        name = f"BALENA_{suffix}"
        if raw is None:
            raw, name = config_vars.get(f"RESIN_{suffix}"), f"RESIN_{suffix}"
        if raw is None:
            values[attr] = getattr(defaults, attr)
            continue
        try:
            values[attr] = _parse_value(attr, raw)
        except _HoldError as exc:  # a bad update window holds updates (never applies at noon)
            values[attr] = raw
            errors.append(f"{name}: {exc}; holding updates until it is fixed")
        except ValueError as exc:
            values[attr] = getattr(previous, attr)
            errors.append(f"{name}: {exc}; keeping {getattr(previous, attr)!r}")
    return replace(previous, **values), errors
