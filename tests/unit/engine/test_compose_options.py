"""Every compose key the reference's service model accepts reaches the container spec, read
as the reference (docker's conventions) reads it; a value the engine would refuse rejects the
app alone with a reason naming service and key; keys the agent leaves out are listed."""

from __future__ import annotations

from typing import Any

import pytest

from agent.reconcile.planner import plan
from agent.reconcile.steps import PlanContext
from tests.unit.engine.targets import make, one_app
from tests.unit.reconcile.factories import (
    app,
    image,
    network,
    release,
    running_for,
    state,
    svc,
    target,
)


def service_of(composition: dict[str, Any], networks: dict[str, Any] | None = None) -> Any:
    db = {"id": 4, "image_id": 5, "image": "reg/db:1"}
    return one_app({"composition": composition}, others={"db": db}, networks=networks)


def rejection(composition: dict[str, Any], networks: dict[str, Any] | None = None) -> str:
    app = service_of(composition, networks)
    assert app.rejection is not None, "accepted"
    return app.rejection


EVERY_KEY = {
    "shm_size": "64m",
    "mem_limit": "1g",
    "mem_reservation": "512MiB",
    "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512},
    "sysctls": {"net.core.somaxconn": 1024},
    "pid": "host",
    "ipc": "shareable",
    "security_opt": ["no-new-privileges:true", "label=disable"],
    "group_add": ["dialout", 20],
    "cpuset": "0",
    "cpu_shares": 512,
    "cpus": "0.5",
    "domainname": "example.org",
    "oom_kill_disable": True,
    "oom_score_adj": 100,
    "expose": ["3000", "4000-4001/udp", 5000],
    "dns_search": "example.org",
    "dns_opt": ["ndots:2"],
    "mac_address": "02:42:AC:11:00:99",
    "pids_limit": 100,
    "userns_mode": "host",
    "cgroup_parent": "mygroup",
}


def test_every_key_reaches_the_engine_arguments():
    spec = make(EVERY_KEY)
    hc = spec.host_config
    assert hc["shm_size"] == 64 * 2**20
    assert hc["mem_limit"] == 2**30
    assert hc["mem_reservation"] == 512 * 2**20
    assert hc["ulimits"] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 512, "Hard": 512},
    ]
    assert hc["sysctls"] == {"net.core.somaxconn": "1024"}
    assert hc["pid_mode"] == "host"
    assert hc["ipc_mode"] == "shareable"
    assert hc["security_opt"] == ["no-new-privileges:true"]  # label= left out, as the reference
    assert hc["group_add"] == ["dialout", "20"]
    assert hc["cpuset_cpus"] == "0"
    assert hc["cpu_shares"] == 512
    assert hc["nano_cpus"] == 500_000_000
    assert hc["oom_kill_disable"] is True
    assert hc["oom_score_adj"] == 100
    assert hc["dns_search"] == ["example.org"]
    assert hc["dns_opt"] == ["ndots:2"]
    assert hc["pids_limit"] == 100
    assert hc["userns_mode"] == "host"
    assert hc["cgroup_parent"] == "mygroup"
    assert spec.create["domainname"] == "example.org"
    assert spec.create["mac_address"] == "02:42:ac:11:00:99"
    assert spec.create["ports"] == [(3000, "tcp"), (4000, "udp"), (4001, "udp"), (5000, "tcp")]


def test_keys_left_unset_leave_the_engine_defaults():
    hc = make({}).host_config
    for key in (
        "shm_size",
        "mem_limit",
        "ulimits",
        "sysctls",
        "pid_mode",
        "ipc_mode",
        "nano_cpus",
        "cpu_shares",
        "oom_kill_disable",
        "dns_search",
        "pids_limit",
    ):
        assert key not in hc
    # zero numbers are unset, as the reference reads them
    hc = make({"cpu_shares": 0, "cpus": 0, "mem_limit": "0", "oom_score_adj": "0"}).host_config
    assert not {"cpu_shares", "nano_cpus", "mem_limit", "oom_score_adj"} & set(hc)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        (1024, 1024),
        ("64m", 64 * 2**20),
        ("64MB", 64 * 2**20),
        ("1g", 2**30),
        ("1.5g", 3 * 2**29),
        ("100k", 102400),
        ("2GiB", 2 * 2**30),
        ("8 m", 8 * 2**20),
    ],
)
def test_sizes_read_as_docker_reads_them(text, size):
    assert make({"shm_size": text}).host_config["shm_size"] == size


def test_camel_case_keys_as_the_reference_reads_them():
    hc = make({"memLimit": "64m", "cpuShares": 100, "dnsSearch": ["a"]}).host_config
    assert (hc["mem_limit"], hc["cpu_shares"], hc["dns_search"]) == (64 * 2**20, 100, ["a"])


def test_composition_labels_and_environment_are_merged_under_the_services_own():
    spec = make(
        {"labels": {"my.label": "comp", "other": "o"}, "environment": {"FOO": "c", "X": "1"}}
    )
    assert spec.create["labels"]["my.label"] == "x" and spec.create["labels"]["other"] == "o"
    assert spec.create["environment"]["FOO"] == "bar" and spec.create["environment"]["X"] == "1"


def test_network_aliases_and_fixed_addresses():
    networks = {
        "front": {"ipam": {"config": [{"subnet": "10.5.0.0/16", "gateway": "10.5.0.1"}]}},
        "back": {},
    }
    spec = make(
        {
            "networks": {
                "front": {"aliases": ["www", "web"], "ipv4_address": "10.5.0.9"},
                "back": None,
            }
        },
        networks=networks,
    )
    assert spec.endpoints == {
        "5_front": {"aliases": ["main", "www", "web"], "ipv4_address": "10.5.0.9"},
        "5_back": {"aliases": ["main"]},
    }
    app = service_of({}, networks)
    assert app.release.networks["front"].ipam[0].subnet == "10.5.0.0/16"
    reason = rejection({"networks": {"back": {"ipv4_address": "10.5.0.9"}}}, networks)
    assert "service main: networks: 10.5.0.9 is in no subnet" in reason


def test_network_mode_naming_an_app_network_and_a_service():
    spec = make({"network_mode": "front", "networks": ["back"]}, networks={"front": {}, "back": {}})
    assert spec.host_config["network_mode"] == "5_front" and spec.extra_networks == ("5_back",)
    app = service_of({"network_mode": "service: db"})
    assert app.release.services["main"].composition.network_mode == "service:db"
    assert "no other service nope" in rejection({"network_mode": "service:nope"})
    assert "undeclared network nope" in rejection({"network_mode": "nope"})
    # a container: mode is left out (the service joins default), as the reference does
    comp = service_of({"network_mode": "container:abc"}).release.services["main"].composition
    assert comp.network_mode is None and comp.ignored_keys == ("network_mode: container:abc",)


def test_ignored_keys_are_listed():
    comp = (
        service_of(
            {
                "logging": {"driver": "none"},
                "storage_opt": {"size": "1G"},
                "stdin_open": True,
                "security_opt": ["label=disable"],
                "networks": {"n": {"priority": 5}},
            },
            networks={"n": {}},
        )
        .release.services["main"]
        .composition
    )
    assert comp.ignored_keys == (
        "logging",
        "stdin_open",
        "storage_opt",
        "networks: n: priority",
        "security_opt: label=disable",
    )


@pytest.mark.parametrize(
    ("composition", "key", "fragment"),
    [
        ({"shm_size": "64x"}, "shm_size", "not a size"),
        ({"mem_limit": "1m"}, "mem_limit", "6 MiB"),
        ({"mem_limit": "64m", "mem_reservation": "128m"}, "mem_limit", "below mem_reservation"),
        ({"ulimits": {"nofiles": 5}}, "ulimits", "unknown ulimit"),
        ({"ulimits": {"nofile": {"soft": 10, "hard": 5}}}, "ulimits", "above the hard"),
        ({"sysctls": {"vm.swappiness": 1}}, "sysctls", "not namespaced"),
        ({"sysctls": ["net.ipv4.ip_forward=1"], "network_mode": "host"}, "sysctls", "host"),
        ({"pid": "service:db"}, "pid", "not supported"),
        ({"ipc": "bogus"}, "ipc", "not supported"),
        ({"security_opt": ["seccomp=/etc/profile.json"]}, "security_opt", "inline as JSON"),
        ({"security_opt": ["bogus=1"]}, "security_opt", "unknown security option"),
        ({"cpuset": "0-a"}, "cpuset", "CPU list"),
        ({"cpu_shares": -5}, "cpu_shares", "out of range"),
        ({"cpus": "0.001"}, "cpus", "0.01"),
        ({"cpus": "lots"}, "cpus", "number of CPUs"),
        ({"cpus": 1, "cpu_quota": 50000}, "cpus", "cpu_quota"),
        ({"oom_score_adj": 1001}, "oom_score_adj", "out of range"),
        ({"expose": ["80:80"]}, "expose", "host part"),
        ({"mac_address": "02:42"}, "mac_address", "MAC"),
        ({"pids_limit": "many"}, "pids_limit", "integer"),
        ({"userns_mode": "private"}, "userns_mode", "not supported"),
        ({"cap_add": ["NET_ADMN"]}, "cap_add", "unknown capability"),
        ({"cap_drop": ["cap_bogus"]}, "cap_drop", "unknown capability"),
        ({"devices": ["/dev/a:/dev/b:rwx"]}, "devices", "permissions"),
        ({"devices": ["dev/a"]}, "devices", "bad device"),
        ({"user": "a:b:c"}, "user", "bad user"),
        ({"dns": ["dns.example.org"]}, "dns", "not an IP"),
        ({"networks": {"n": {"ipv4_address": "::1"}}}, "networks", "IPv4"),
    ],
)
def test_values_the_engine_would_refuse_reject_the_app(composition, key, fragment):
    reason = rejection(composition, networks={"n": {}})
    assert "service main" in reason and key in reason and fragment in reason, reason


def test_valid_names_are_accepted_in_any_case():
    hc = make(
        {
            "cap_add": ["net_admin", "CAP_SYS_TIME", "ALL"],
            "devices": ["/dev/i2c-1"],
            "user": "1000:1000",
            "dns": ["1.1.1.1", "::1"],
        }
    ).host_config
    assert hc["cap_add"] == ["ALL", "CAP_SYS_TIME", "net_admin"]
    assert make({"user": ""}).create["user"] == ""  # the image's user, as before


def test_a_new_key_changes_the_hash_and_an_old_config_keeps_its_own():
    base = service_of({}).release.services["main"]
    assert (
        base.config_hash() == service_of({"cpu_shares": 0}).release.services["main"].config_hash()
    )
    for key, value in EVERY_KEY.items():
        other = service_of({key: value}).release.services["main"]
        assert other.config_hash() != base.config_hash(), key


@pytest.mark.parametrize("key", sorted(EVERY_KEY))
def test_the_planner_recreates_a_service_when_a_new_key_changes(key):
    old = target({"a1": app(1, release("r1", {"web": svc("web:1")}))})
    new = target(
        {"a1": app(1, release("r1", {"web": svc("web:1", composition={key: EVERY_KEY[key]})}))}
    )
    current = state(image("web:1"), network("1_default"), running_for(old, "a1", "web", "c1"))
    assert plan(current, old, PlanContext()).steps == ()  # unchanged: left alone
    steps = plan(current, new, PlanContext()).steps
    assert [type(s).__name__ for s in steps] == ["Kill"], steps
