"""config.json `registryEndpoint` (and its default beside the API) and `registryCredentials`."""

import json

import pytest

from agent.config import load_device_config
from agent.errors import ConfigError


def load(tmp_path, **values):
    base = {"uuid": "u1", "apiEndpoint": "https://api.balena-cloud.com", "deviceApiKey": "k"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base, **values}))
    return load_device_config(path, env={})


@pytest.mark.parametrize(
    ("api", "registry"),
    [
        ("https://api.balena-cloud.com", "registry2.balena-cloud.com"),
        ("https://api.my-openbalena.example:443/", "registry2.my-openbalena.example"),
        ("http://127.0.0.1:8080", None),  # an API with no api.<domain> name names no registry
        ("https://cloud.example.com", None),
    ],
)
def test_the_cloud_registry_defaults_to_registry2_beside_the_api(tmp_path, api, registry):
    assert load(tmp_path, apiEndpoint=api).registry_endpoint == registry


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("registry2.balena-cloud.com", "registry2.balena-cloud.com"),
        ("https://Registry.Example.com:5000/", "registry.example.com:5000"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("", None),  # explicitly none: the device's key is sent nowhere
        (None, None),
    ],
)
def test_registry_endpoint_is_a_host(tmp_path, value, host):
    assert load(tmp_path, registryEndpoint=value).registry_endpoint == host


@pytest.mark.parametrize("value", [5, ["x"], "https://"])
def test_a_bad_registry_endpoint_is_a_clear_error(tmp_path, value):
    with pytest.raises(ConfigError, match="registryEndpoint"):
        load(tmp_path, registryEndpoint=value)


def test_registry_credentials_by_host(tmp_path):
    cfg = load(
        tmp_path,
        registryCredentials={
            "ghcr.io": {"username": "robot", "password": "pat"},
            "https://index.docker.io/v1/": {"username": "me", "password": "pw"},
        },
    )
    assert cfg.registry_credentials == {"ghcr.io": ("robot", "pat"), "docker.io": ("me", "pw")}
    assert "registryCredentials" not in cfg.extra


@pytest.mark.parametrize(
    "value",
    [
        ["ghcr.io"],
        {"ghcr.io": "robot:pat"},
        {"ghcr.io": {"username": "", "password": "x"}},
        {"ghcr.io": {"username": "robot"}},
        {"": {"username": "robot", "password": "x"}},
    ],
)
def test_bad_registry_credentials_are_a_clear_error(tmp_path, value):
    with pytest.raises(ConfigError, match="registryCredentials"):
        load(tmp_path, registryCredentials=value)
