"""Every compose key of a balena release reaches the real engine: a service using the resource,
kernel, DNS and network keys is created with each of them in `docker inspect`; a key the agent
leaves out is logged, never dropped silently."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path
from typing import Any

from testbed.targets import app, device_target, service
from tests.helpers import wait_until
from tests.integration.conftest import Device, Images

APP = uuidlib.uuid4().hex
MIB = 2**20


def test_compose_keys_reach_the_engine(device: Device, images: Images) -> None:
    composition: dict[str, Any] = {
        "shm_size": "32m",
        "mem_limit": "256m",
        "mem_reservation": "64m",
        "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512},
        "sysctls": {"net.core.somaxconn": 1024},
        "pid": "host",
        "ipc": "shareable",
        "security_opt": ["no-new-privileges:true", "label=disable"],
        "group_add": ["20"],
        "cpuset": "0",
        "cpu_shares": 512,
        "cpus": "0.5",
        "domainname": "example.org",
        "oom_kill_disable": True,
        "oom_score_adj": 100,
        "expose": ["3000", "4000/udp"],
        "dns": ["10.9.9.9"],
        "dns_search": ["example.org"],
        "dns_opt": ["ndots:2"],
        "mac_address": "02:42:0a:05:00:09",
        "pids_limit": 100,
        "userns_mode": "host",
        "cap_add": ["NET_ADMIN"],
        "logging": {"driver": "none"},
        "networks": {"front": {"aliases": ["www"], "ipv4_address": "10.231.0.9"}},
    }
    target = app(
        app_id=501,
        name="keys",
        release_uuid="k1",
        release_id=1,
        services={
            "main": service(images.main_v1, service_id=1, image_id=11, **composition),
            # camelCase keys, as the reference reads them too
            "quota": service(
                images.main_v1, service_id=2, image_id=11, cpuQuota=50000, memLimit="64m"
            ),
        },
        networks={"front": {"ipam": {"config": [{"subnet": "10.231.0.0/24"}]}}},
    )
    device.cloud.set_target(device.uuid, device_target({APP: target}))
    device.agent.start()
    wait_until(
        lambda: device.update_status(APP) == ("k1", "done"),
        60,
        interval=0.2,
        message=lambda: f"{device.update_status(APP)}\n{device.agent.log_tail(30)}",
    )
    (main,) = device.by_service()["main"]
    main.reload()
    hc, config = main.attrs["HostConfig"], main.attrs["Config"]
    assert hc["ShmSize"] == 32 * MIB
    assert hc["Memory"] == 256 * MIB
    assert hc["MemoryReservation"] == 64 * MIB
    assert sorted(hc["Ulimits"], key=lambda u: u["Name"]) == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 512, "Hard": 512},
    ]
    assert hc["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert hc["PidMode"] == "host"
    assert hc["IpcMode"] == "shareable"
    # (the engine adds label=disable itself for pid: host; the compose one is left out)
    assert hc["SecurityOpt"][0] == "no-new-privileges:true"
    assert hc["GroupAdd"] == ["20"]
    assert hc["CpusetCpus"] == "0"
    assert hc["CpuShares"] == 512
    assert hc["NanoCpus"] == 500_000_000
    assert hc["OomScoreAdj"] == 100
    assert hc["OomKillDisable"] is True  # (cgroup v1 here; the engine drops it on v2)
    assert hc["Dns"] == ["10.9.9.9"]
    assert hc["DnsSearch"] == ["example.org"]
    assert hc["DnsOptions"] == ["ndots:2"]
    assert hc["PidsLimit"] == 100
    assert hc["UsernsMode"] == "host"
    assert hc["CapAdd"] == ["NET_ADMIN"]
    assert config["Domainname"] == "example.org"
    assert {"3000/tcp", "4000/udp"} <= set(config["ExposedPorts"])
    endpoint = main.attrs["NetworkSettings"]["Networks"]["501_front"]
    assert endpoint["IPAMConfig"]["IPv4Address"] == "10.231.0.9"
    assert endpoint["IPAddress"] == "10.231.0.9"
    assert {"main", "www"} <= set(endpoint["Aliases"])
    assert endpoint["MacAddress"] == "02:42:0a:05:00:09"
    (quota,) = device.by_service()["quota"]
    assert quota.attrs["HostConfig"]["CpuQuota"] == 50000
    assert quota.attrs["HostConfig"]["Memory"] == 64 * MIB
    # the engine's own view: the sysctl and the limits hold inside the running container
    assert main.exec_run(["cat", "/proc/sys/net/core/somaxconn"]).output.strip() == b"1024"
    # the container's own process, read from the host (an exec'd shell's limits are the
    # engine's choice, and with pid: host the container's /proc/1 is the host's init)
    limits = Path(f"/proc/{main.attrs['State']['Pid']}/limits").read_text()
    (nofile,) = [line.split()[3:5] for line in limits.splitlines() if "open files" in line]
    assert nofile == ["1024", "2048"]
    ignored = device.agent.wait_for_event("compose_keys_ignored", 5, app="keys")
    assert ignored["keys"] == ["logging", "security_opt: label=disable"]
    assert not device.agent.events_named("task_crashed")


def test_an_engine_refusal_at_create_fails_the_pass_with_its_reason(
    device: Device, images: Images
) -> None:
    """A value only the engine can judge (a device this host lacks) fails the pass: the app's
    status carries the engine's reason, the agent retries with backoff and stays up."""
    uuid = uuidlib.uuid4().hex
    target = app(
        app_id=502,
        name="nodev",
        release_uuid="n1",
        release_id=1,
        services={
            "main": service(
                images.main_v1, service_id=1, image_id=11, devices=["/dev/no-such-device"]
            )
        },
    )
    device.cloud.set_target(device.uuid, device_target({uuid: target}))
    device.agent.start()
    failed = device.agent.wait_for_event("step_failed", 60)
    assert "/dev/no-such-device" in failed["error"], failed
    device.agent.wait_api()
    entry: dict = {}

    def reported() -> bool:
        nonlocal entry
        apps = device.agent.api("GET", "/v2/agent/status").body["apps"]
        entry = next((a for a in apps if a["appUuid"] == uuid), {})
        return "/dev/no-such-device" in str(entry.get("reason"))

    wait_until(reported, 20, interval=0.3, message=lambda: f"{entry}\n{device.agent.log_tail(20)}")
    assert entry["updateStatus"] == "applying changes"
    assert "start nodev/main failed" in entry["reason"], entry
    # retried with backoff, not in a tight loop
    third = device.agent.wait_for_event("apply_retry_scheduled", 20, attempt=3)
    assert third["retry_in_s"] > 1, third
    assert len(device.agent.events_named("step_failed")) == 3
    assert device.agent.running
    assert not device.agent.events_named("task_crashed")
