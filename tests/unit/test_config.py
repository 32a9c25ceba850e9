import json

import pytest

from agent.config import FleetConfig, apply_config_vars, load_device_config
from agent.errors import ConfigError


def write(tmp_path, **values):
    base = {"uuid": "u1", "apiEndpoint": "http://127.0.0.1:1/", "deviceApiKey": "k"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base, **values}))
    return path


def test_defaults_and_our_keys(tmp_path):
    cfg = load_device_config(write(tmp_path, dataDir=str(tmp_path / "d")), env={})
    assert cfg.api_endpoint == "http://127.0.0.1:1"
    assert cfg.listen_port == 48484
    assert cfg.poll_interval_ms == 900_000
    assert cfg.docker_host == "unix:///var/run/docker.sock"
    assert str(cfg.lock_dir) == "/tmp/balena-supervisor/services"


def test_docker_host_from_env(tmp_path):
    cfg = load_device_config(write(tmp_path), env={"DOCKER_HOST": "unix:///x.sock"})
    assert cfg.docker_host == "unix:///x.sock"


@pytest.mark.parametrize(
    "values",
    [{"uuid": ""}, {"appUpdatePollInterval": 10}, {"listenPort": "x"}, {"logFormat": "xml"}],
)
def test_bad_config_is_a_clear_error(tmp_path, values):
    with pytest.raises(ConfigError):
        load_device_config(write(tmp_path, **values), env={})


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_device_config(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="JSON"):
        load_device_config(tmp_path / "bad.json")


def test_config_vars_apply_and_bad_values_keep_previous():
    prev = FleetConfig(poll_interval_ms=60_000)
    new, errors = apply_config_vars(
        prev,
        {"BALENA_SUPERVISOR_POLL_INTERVAL": "5000", "RESIN_SUPERVISOR_OVERRIDE_LOCK": "1"},
        900_000,
    )
    assert new.poll_interval_ms == 5000 and new.override_lock and errors == []
    bad, errors = apply_config_vars(
        new,
        {"BALENA_SUPERVISOR_POLL_INTERVAL": "fast", "BALENA_SUPERVISOR_LOCAL_MODE": "2"},
        900_000,
    )
    assert bad.poll_interval_ms == 5000  # kept
    assert len(errors) == 2 and "BALENA_SUPERVISOR_POLL_INTERVAL" in errors[0]
    unset, _ = apply_config_vars(new, {}, 900_000)
    assert unset.poll_interval_ms == 900_000 and not unset.override_lock


def test_balena_prefix_wins_over_resin():
    new, _ = apply_config_vars(
        FleetConfig(),
        {"BALENA_SUPERVISOR_POLL_INTERVAL": "2000", "RESIN_SUPERVISOR_POLL_INTERVAL": "3000"},
        900_000,
    )
    assert new.poll_interval_ms == 2000


def test_local_api_keys(tmp_path):
    cfg = load_device_config(write(tmp_path), env={})
    assert (cfg.local_mode, cfg.supervisor_api_host, cfg.device_id) == (
        False,
        None,  # the supervisor network's gateway (engine/supnet.py)
        None,
    )
    cfg = load_device_config(
        write(tmp_path, localMode=True, supervisorApiHost="10.114.104.1", deviceId=42), env={}
    )
    assert (cfg.local_mode, cfg.supervisor_api_host, cfg.device_id) == (
        True,
        "10.114.104.1",
        42,
    )
    assert load_device_config(write(tmp_path, localMode="1"), env={}).local_mode
    for bad in ({"localMode": 3}, {"deviceId": "x"}):
        with pytest.raises(ConfigError):
            load_device_config(write(tmp_path, **bad), env={})


def test_strict_api_keys_and_host_boot_dir(tmp_path):
    cfg = load_device_config(write(tmp_path), env={})
    assert (cfg.strict_api_keys, cfg.host_boot_dir) == (False, None)
    cfg = load_device_config(write(tmp_path, strictApiKeys=True, hostBootDir="/mnt/boot"), env={})
    assert cfg.strict_api_keys and str(cfg.host_boot_dir) == "/mnt/boot"
    assert "strictApiKeys" not in cfg.extra and "hostBootDir" not in cfg.extra
    assert load_device_config(write(tmp_path, strictApiKeys="true"), env={}).strict_api_keys
    with pytest.raises(ConfigError, match="strictApiKeys"):
        load_device_config(write(tmp_path, strictApiKeys=[1]), env={})


@pytest.mark.parametrize(
    ("value", "address", "url"),
    [
        (None, None, "http://127.0.0.1:48484"),
        ("", None, "http://127.0.0.1:48484"),
        ("127.0.0.5", "127.0.0.5", "http://127.0.0.5:48484"),
        ("0.0.0.0", "0.0.0.0", "http://127.0.0.1:48484"),
        ("::1", "::1", "http://[::1]:48484"),
    ],
)
def test_listen_address_and_where_local_clients_reach_the_api(tmp_path, value, address, url):
    values = {} if value is None else {"listenAddress": value}
    cfg = load_device_config(write(tmp_path, **values), env={})
    assert cfg.listen_address == address
    assert cfg.local_api_url == url


@pytest.mark.parametrize("value", ["localhost", "127.0.0.300", 5])
def test_listen_address_must_be_an_ip_literal(tmp_path, value):
    with pytest.raises(ConfigError, match="listenAddress"):
        load_device_config(write(tmp_path, listenAddress=value), env={})
