from dataclasses import replace

from agent.engine.compose import parse_ports, restart_policy
from tests.unit.engine.targets import DEVICE, make


def test_names_labels_env_and_lock_mounts():
    spec = make({"volumes": ["data:/data"]}, volumes={"data": {}})
    assert spec.name == "main_4_90_r9"
    labels = spec.create["labels"]
    assert labels["io.balena.supervised"] == "true"
    assert labels["io.balena.app-uuid"] == "a1"
    assert labels["io.balena.service-name"] == "main"
    assert labels["my.label"] == "x"
    env = spec.create["environment"]
    assert env["FOO"] == "bar"
    assert env["BALENA_APP_LOCK_PATH"] == "/tmp/balena/updates.lock"
    assert env["BALENA_DEVICE_UUID"] == "dev1"
    binds = spec.host_config["binds"]
    assert "5_data:/data" in binds
    assert "/tmp/locks/5/main:/tmp/balena" in binds
    assert "/tmp/locks/5/main:/tmp/resin" in binds
    assert spec.primary_network == "5_default"
    assert spec.host_config["network_mode"] == "5_default"


def test_host_network_joins_no_app_network():
    spec = make({"network_mode": "host"})
    assert spec.primary_network is None
    assert spec.host_config["network_mode"] == "host"


def test_two_networks_connect_the_second_before_start():
    spec = make({"networks": ["front", "back"]}, networks={"front": {}, "back": {}})
    assert spec.primary_network == "5_back"
    assert spec.extra_networks == ("5_front",)


def test_ports_and_restart():
    exposed, bindings = parse_ports(("8080:80", "53/udp", "127.0.0.1:9000:9001"))
    assert exposed == [(80, "tcp"), (53, "udp"), (9001, "tcp")]
    # a lone container port is published on the same host port, as the reference does
    assert bindings == {"80/tcp": [8080], "53/udp": [53], "9001/tcp": [("127.0.0.1", 9000)]}
    assert restart_policy("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert restart_policy("no") == {"Name": "no"}


def test_healthcheck_in_nanoseconds():
    spec = make({"healthcheck": {"test": "true", "interval": "2s", "retries": 2}})
    hc = spec.create["healthcheck"]
    assert hc["test"] == ["CMD-SHELL", "true"]
    assert hc["interval"] == 2_000_000_000
    assert hc["retries"] == 2


def _with_labels(labels, network_mode=None, keys=None, port=48484):
    device = replace(
        DEVICE,
        api_port=port,
        api_host="10.114.104.1",
        app_api_keys={5: "k5"} if keys is None else keys,
    )
    comp = {"network_mode": network_mode} if network_mode else {}
    return make(comp, labels=labels, device=device).create["environment"]


def test_supervisor_api_env_only_for_the_label():
    env = _with_labels({"io.balena.features.supervisor-api": "1"})
    assert env["BALENA_SUPERVISOR_API_KEY"] == "k5"
    assert env["BALENA_SUPERVISOR_HOST"] == "10.114.104.1"
    assert env["BALENA_SUPERVISOR_PORT"] == "48484"
    assert env["BALENA_SUPERVISOR_ADDRESS"] == "http://10.114.104.1:48484"
    assert env["RESIN_SUPERVISOR_API_KEY"] == "k5"
    assert "BALENA_SUPERVISOR_API_KEY" not in _with_labels({})
    assert "BALENA_SUPERVISOR_API_KEY" not in _with_labels(
        {"io.balena.features.supervisor-api": "0"}
    )
    # no key for the app (yet), or no API: nothing rather than something wrong
    assert "BALENA_SUPERVISOR_API_KEY" not in _with_labels(
        {"io.balena.features.supervisor-api": "1"}, keys={}
    )
    assert "BALENA_SUPERVISOR_API_KEY" not in _with_labels(
        {"io.balena.features.supervisor-api": "true"}, port=None
    )


def test_supervisor_api_host_is_localhost_on_the_host_network():
    env = _with_labels({"io.balena.features.supervisor-api": "true"}, network_mode="host")
    assert env["BALENA_SUPERVISOR_ADDRESS"] == "http://127.0.0.1:48484"


def test_a_port_range_maps_each_port_of_the_range():
    spec = make({"ports": ["8000-8002:8000-8002", "127.0.0.1:9000-9001:7000-7001/udp"]})
    assert spec.create["ports"] == [
        (8000, "tcp"),
        (8001, "tcp"),
        (8002, "tcp"),
        (7000, "udp"),
        (7001, "udp"),
    ]
    assert spec.host_config["port_bindings"] == {
        "8000/tcp": [8000],
        "8001/tcp": [8001],
        "8002/tcp": [8002],
        "7000/udp": [("127.0.0.1", 9000)],
        "7001/udp": [("127.0.0.1", 9001)],
    }


def test_ranges_random_host_ports_ipv6_and_repeated_container_ports():
    exposed, bindings = parse_ports(("9000-9001", ":80", "[::1]::81", "8080:80", "::1:8443:443"))
    assert exposed == [(9000, "tcp"), (9001, "tcp"), (80, "tcp"), (81, "tcp"), (443, "tcp")]
    assert bindings == {
        "9000/tcp": [9000],
        "9001/tcp": [9001],
        "80/tcp": [None, 8080],  # an empty host port: the engine picks one
        "81/tcp": [("::1", None)],
        "443/tcp": [("::1", 8443)],
    }


def test_host_bind_mounts_never_reach_the_engine():
    spec = make(
        {
            "volumes": [
                "/:/host",
                "/var/run/docker.sock:/var/run/docker.sock",
                "./src:/src",
                {"type": "bind", "source": "/etc", "target": "/etc2"},
                "data:/data:ro",
                "/cache",
            ]
        },
        volumes={"data": {}},
    )
    assert spec.host_config["binds"] == [
        "5_data:/data:ro",
        "/cache",
        "/tmp/locks/5/main:/tmp/balena",
        "/tmp/locks/5/main:/tmp/resin",
    ]


def test_stop_grace_period_in_whole_seconds():
    assert make({"stop_grace_period": "1m30.9s"}).create["stop_timeout"] == 90
    assert "stop_timeout" not in make({}).create


def test_ports_on_the_host_network_are_exposed_but_not_published():
    spec = make({"network_mode": "host", "ports": ["8080:80"]})
    assert spec.create["ports"] == [(80, "tcp")]
    assert "port_bindings" not in spec.host_config


def test_extra_hosts_in_either_compose_form():
    spec = make({"extra_hosts": ["db=10.0.0.2", "cache:10.0.0.3"]})
    assert spec.host_config["extra_hosts"] == ["db:10.0.0.2", "cache:10.0.0.3"]


def test_the_widest_range_is_built_port_by_port():
    exposed, bindings = parse_ports(("1-65535:1-65535/udp",))
    assert len(exposed) == len(bindings) == 65535
    assert bindings["65535/udp"] == [65535]
