"""Whatever the cloud sends, nothing but a rejection comes out of it: arbitrary service
compositions (plausible and junk values for every compose key the model knows, unknown keys,
bad names, bad ids) go through parse_target → the planner (against the simulated engine) →
the container spec → the Docker SDK's own config builders (pure, no request). The only
failure allowed is a `TargetStateError` for a broken document or an app's `rejection`; a
rejected app is reported `rejected` and the valid app beside it is brought up all the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.engine.compose import DeviceContext, container_spec
from agent.errors import TargetStateError
from agent.model import CurrentState, TargetState, UpdateStatus, parse_target
from agent.model.target import KNOWN_COMPOSE_KEYS
from agent.reconcile.planner import plan
from agent.reconcile.steps import PlanContext, Start
from tests.unit.reconcile.factories import container, image
from tests.unit.reconcile.sim import apply_all

DEV = "dev1"
GOOD_UUID = "good-app"
DEVICE = DeviceContext(
    "dev1",
    "raspberrypi4-64",
    Path("/tmp/locks"),
    "0.1.0",
    api_port=48484,
    app_api_keys={2**50: "k"},
)


class RecordingClient(docker.APIClient):
    """The SDK's own create_container, up to the request: the body it would post is checked
    to be JSON the engine can decode (no NaN/inf) instead of being sent."""

    def create_container_from_config(
        self, config: dict[str, Any], name: str | None = None, platform: str | None = None
    ) -> dict[str, Any]:
        json.dumps(config, allow_nan=False)
        return {"Id": "recorded"}


# with a version given, the client never talks to an engine
SDK = RecordingClient(base_url="unix:///nonexistent/docker.sock", version="1.41")

# --- values ---------------------------------------------------------------------------------


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 7
) -> st.SearchStrategy[Any]:
    """`good` about `odds` times for one `bad`: enough valid apps get through to reach the
    container spec builder."""
    # (hypothesis favours the ends of a range, and one_of would pick `bad` half the time)
    return st.integers(0, odds).flatmap(lambda n: bad if n == odds // 2 else good)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # nan and ±inf included
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.sampled_from(["web", "db", "main", "data", "front", "default"])
bad_names = st.sampled_from(["web\n", "", "-x", "a b", "wéb", "x/y", "a:b"])
ids = mostly(
    st.integers(min_value=1, max_value=2**40),
    st.sampled_from([0, -1, True, "1", 1.5, None, 2**80]),
    odds=40,
)
port_junk = st.one_of(
    st.integers(min_value=-2, max_value=70000),
    st.text(alphabet="0123456789:-./[]aftu", max_size=14),
    st.sampled_from(["1.5", ":", "", "8000-8002:8000-8001", "8002-8000", "²", "1:2:3", "70000"]),
    st.builds(
        lambda ip, h, he, c, ce, proto: f"{ip}{h}{he}:{c}{ce}{proto}",
        st.sampled_from(["", "127.0.0.1:", "[::1]:", "::1:", "1.2.3:", ":"]),
        st.sampled_from(["", "0", "8000", "65535", "65536", "99999999"]),
        st.sampled_from(["", "-8002", "-7999", "-8001"]),
        st.sampled_from(["0", "1", "8000", "65535", "70000"]),
        st.sampled_from(["", "-8002", "-7999", "-8001"]),
        st.sampled_from(["", "/tcp", "/udp", "/sctp", "/icmp", "/"]),
    ),
)


@st.composite
def valid_ports(draw: st.DrawFn) -> Any:
    port = draw(st.integers(1, 65000))
    count = draw(st.integers(1, 3))
    rng = str(port) if count == 1 else f"{port}-{port + count - 1}"
    proto = draw(st.sampled_from(["", "/tcp", "/udp"]))
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return port if count == 1 and not proto else rng + proto
    host = draw(st.integers(0, 65000))
    host_rng = str(host) if count == 1 else f"{host}-{host + count - 1}"
    ip = draw(st.sampled_from(["", "127.0.0.1:", "[::1]:", "0.0.0.0:"]))
    if shape == 1:
        return f"{ip}:{rng}{proto}" if ip else f":{rng}{proto}"  # the engine picks host ports
    return f"{ip}{host_rng}:{rng}{proto}"


durations = mostly(
    st.one_of(
        st.floats(min_value=0, max_value=1e6),
        st.integers(min_value=0, max_value=10**6),
        st.sampled_from(["1m30s", "10s", "500ms", "0", "1.5h", "2"]),
    ),
    st.one_of(
        st.floats(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from(["inf", "nan", "1e999", "-1s", "0.5us", "9" * 400, "-0.1"]),
        st.text(alphabet="0123456789.hmsun-e ", max_size=10),
    ),
)
volumes = mostly(
    st.sampled_from(
        [
            "data:/data",
            "data:/data:ro",
            "data:/data:rw,nocopy",
            "/anon",
            "/:/host",
            "/var/run/docker.sock:/var/run/docker.sock",
            "./x:/x",
            "~/y:/y",
            {"type": "bind", "source": "/", "target": "/host"},
            {"type": "volume", "source": "data", "target": "/lv", "read_only": True},
            {"type": "volume", "target": "/lanon"},
            {"type": "tmpfs", "target": "/lt", "tmpfs": {"size": 1024}},
        ]
    ),
    st.one_of(
        st.sampled_from(["anon", ":/x", "data:/a:b:c", "other:/o", "data:/tmp/balena", "data:x"]),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["volume", "tmpfs", "bind", "npipe"])},
            optional={
                "source": json_values,
                "target": st.sampled_from(["/data", "/tmp/balena", "x"]) | json_values,
                "read_only": json_values,
                "volume": json_values,
                "tmpfs": st.fixed_dictionaries({"size": json_values}) | json_values,
            },
        ),
        st.text(alphabet="/:.~dat", max_size=10),
    ),
)
short_text = st.text(max_size=8)
text_lists = st.lists(short_text, max_size=2)
healthchecks = st.fixed_dictionaries(
    {"test": mostly(st.sampled_from(["true", ["CMD", "true"], ["NONE"]]), json_values)},
    optional={
        "interval": durations,
        "timeout": durations,
        "start_period": durations,
        "retries": mostly(st.integers(0, 10), st.integers(min_value=-2, max_value=2**64)),
        "disable": st.booleans(),
    },
)
capabilities = st.sampled_from(["NET_ADMIN", "cap_sys_time", "ALL", "BOGUS"])
sizes = mostly(
    st.one_of(st.integers(2**23, 2**40), st.sampled_from(["64m", "1g", "1.5GiB", "8192kb", "0"])),
    st.one_of(st.integers(-1, 2**64), st.sampled_from(["5m", "x", "9" * 70, "1e3", "-1m"])),
    odds=3,
)
sysctl_names = mostly(
    st.sampled_from(["net.core.somaxconn", "kernel.shmmax", "fs.mqueue.msg_max"]),
    st.sampled_from(["vm.swappiness", "", "a b", "kernel.panic"]),
    odds=3,
)
addresses = st.sampled_from(["10.5.0.9", "10.6.0.9", "fd00::9", "x", "", "::1"])
endpoints = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "aliases": st.one_of(st.lists(names, max_size=2), json_values),
            "ipv4_address": addresses,
            "ipv6_address": addresses,
            "link_local_ips": st.lists(addresses, max_size=2),
            "priority": st.integers(),
        },
    ),
)
# a plausible value for every compose key the model knows (junk comes one time in eight)
PLAUSIBLE: dict[str, Any] = {
    "command": st.one_of(short_text, text_lists),
    "entrypoint": st.one_of(short_text, text_lists),
    "ports": st.lists(mostly(valid_ports(), port_junk), min_size=1, max_size=3),
    "expose": st.lists(
        st.one_of(st.integers(0, 70000), st.sampled_from(["80/udp", "8000-8002", "1:2", "x"])),
        max_size=2,
    ),
    "volumes": st.lists(volumes, min_size=1, max_size=3),
    "restart": mostly(
        st.sampled_from(["no", "always", "on-failure", "on-failure:3", "unless-stopped"]),
        st.sampled_from(["on-failure:²", "always:1", "", "sometimes"]),
    ),
    "network_mode": st.sampled_from(
        ["host", "none", "bridge", "service:db", "service: web", "container:x", "front", "nope"]
    ),
    "networks": st.one_of(st.lists(names, max_size=2), st.dictionaries(names, endpoints)),
    "privileged": st.booleans(),
    "cap_add": st.one_of(text_lists, st.lists(capabilities, max_size=2)),
    "cap_drop": st.one_of(text_lists, st.lists(capabilities, max_size=2)),
    "devices": st.lists(
        st.sampled_from(["/dev/i2c-1", "/dev/a:/dev/b:rw", "x:y:z:w", "/dev/a:/dev/b:x"])
    ),
    "depends_on": st.one_of(
        st.lists(names, max_size=2),
        st.dictionaries(
            names,
            st.fixed_dictionaries(
                {"condition": mostly(st.sampled_from(["service_started", "x"]), json_values)}
            ),
        ),
    ),
    "healthcheck": healthchecks,
    "init": st.booleans(),
    "user": short_text,
    "working_dir": mostly(st.just("/app"), st.sampled_from(["app", ""])),
    "hostname": short_text,
    "stop_signal": st.sampled_from(["SIGTERM", "SIGINT", "x"]),
    "stop_grace_period": durations,
    "tty": st.booleans(),
    "environment": st.dictionaries(short_text, short_text, max_size=2),
    "labels": st.dictionaries(short_text, short_text, max_size=2),
    "image": short_text,
    "running": st.booleans(),
    "tmpfs": mostly(st.sampled_from(["/run", ["/run", "/cache:size=1m"]]), st.just("run")),
    "extra_hosts": st.lists(st.sampled_from(["a:1.2.3.4", "b=5.6.7.8", "junk"]), max_size=2),
    "dns": st.one_of(short_text, text_lists, st.lists(addresses, max_size=2)),
    "read_only": st.booleans(),
    "shm_size": sizes,
    "mem_limit": sizes,
    "mem_reservation": sizes,
    "sysctls": st.one_of(
        st.dictionaries(sysctl_names, mostly(st.integers(0, 9999), scalars, odds=3), max_size=2),
        st.lists(st.builds("{}={}".format, sysctl_names, short_text), max_size=2),
    ),
    "security_opt": st.lists(
        st.sampled_from(
            [
                "no-new-privileges",
                "no-new-privileges:true",
                "label=disable",
                "seccomp=unconfined",
                'seccomp={"defaultAction": "SCMP_ACT_ALLOW"}',
                "apparmor=unconfined",
                "seccomp=/p.json",
                "bogus",
                "systempaths=unconfined",
            ]
        ),
        max_size=3,
    ),
    "group_add": st.lists(st.one_of(short_text, st.integers(0, 2**32)), max_size=2),
    "ulimits": st.dictionaries(
        st.sampled_from(["nofile", "nproc", "core", "bogus"]),
        st.one_of(
            st.integers(-2, 2**64),
            st.fixed_dictionaries({"soft": st.integers(-2, 9999), "hard": st.integers(-2, 9999)}),
        ),
        max_size=2,
    ),
    "pid": st.sampled_from(["host", "", "container:x", "service:db", "x"]),
    "ipc": st.sampled_from(["host", "private", "shareable", "none", "container:x", "bad"]),
    "domainname": short_text,
    "oom_kill_disable": st.booleans(),
    "oom_score_adj": st.one_of(st.integers(-1100, 1100), st.sampled_from(["5", "x", 1.5])),
    "cpu_shares": st.one_of(st.integers(-5, 300000), st.sampled_from(["512", "x"])),
    "cpu_quota": st.one_of(st.integers(-5, 10**6), st.sampled_from(["50000", "x"])),
    "cpus": st.one_of(
        st.floats(), st.integers(-1, 10**7), st.sampled_from(["0.5", "2", "x", "1e400"])
    ),
    "cpuset": st.one_of(short_text, st.sampled_from(["0", "0-1", "0,2-3", 1])),
    "dns_search": st.one_of(short_text, text_lists),
    "dns_opt": text_lists,
    "mac_address": st.one_of(short_text, st.sampled_from(["02:42:ac:11:00:02", "02:42"])),
    "pids_limit": st.one_of(st.integers(-3, 2**64), st.sampled_from(["100", "x"])),
    "userns_mode": st.sampled_from(["host", "", "private"]),
    "cgroup_parent": short_text,
}
CAMEL = {"memLimit": "mem_limit", "cpuShares": "cpu_shares", "dnsSearch": "dns_search"}
any_key = st.sampled_from(
    [*sorted(KNOWN_COMPOSE_KEYS), "junk", "x-custom", "build", "memLimit", "cpuShares", "dnsSearch"]
)
# the keys whose values need more than a type check: drawn more often
hole_key = st.sampled_from(
    [
        "ports",
        "volumes",
        "stop_grace_period",
        "healthcheck",
        "restart",
        "tmpfs",
        "network_mode",
        "networks",
        "sysctls",
        "ulimits",
        "cpus",
        "mem_limit",
        "security_opt",
    ]
)


@st.composite
def compositions(draw: st.DrawFn) -> dict[str, Any]:
    comp: dict[str, Any] = {}
    keys = draw(st.lists(any_key, max_size=3)) + draw(st.lists(hole_key, min_size=1, max_size=3))
    for key in dict.fromkeys(keys):
        plausible = PLAUSIBLE.get(CAMEL.get(key, key), json_values)
        comp[key] = draw(mostly(plausible, json_values))
    return comp


labels = st.dictionaries(
    st.sampled_from(
        [
            "io.balena.update.strategy",
            "io.balena.update.handover-timeout",
            "io.balena.features.supervisor-api",
            "my.label",
        ]
    ),
    mostly(
        st.sampled_from(["hand-over", "kill-then-download", "1", "nan", "inf", "-5", "1e999"]),
        scalars,
    ),
    max_size=3,
)


@st.composite
def services(draw: st.DrawFn) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "id": draw(ids),
        "image_id": draw(ids),
        "image": draw(mostly(st.sampled_from(["reg/a:1", "reg/b:2", "alpine"]), scalars, 20)),
        "composition": draw(compositions()),
    }
    if draw(st.booleans()):
        svc["labels"] = draw(labels)
    if draw(st.booleans()):
        env_values = mostly(st.one_of(st.text(max_size=5), st.integers(), st.floats()), scalars, 20)
        svc["environment"] = draw(st.dictionaries(st.text(max_size=5), env_values, max_size=3))
    if draw(st.booleans()):
        svc["running"] = draw(mostly(st.booleans(), scalars, 20))
    return svc


@st.composite
def apps(draw: st.DrawFn) -> dict[str, Any]:
    service_map = draw(
        st.dictionaries(mostly(names, bad_names, 20), services(), min_size=1, max_size=3)
    )
    release = {
        "id": draw(ids),
        "services": service_map,
        "volumes": draw(
            mostly(
                st.dictionaries(mostly(names, bad_names, 20), st.none()).map(
                    lambda v: {**v, "data": None}
                ),
                json_values,
                20,
            )
        ),
        "networks": draw(
            mostly(
                st.just(
                    {
                        n: {
                            "ipam": {"config": [{"subnet": "10.5.0.0/16"}, {"subnet": "fd00::/64"}]}
                        }
                        if n == "front"
                        else {}
                        for n in ("data", "default", "front", "web", "db", "main")
                    }
                ),
                json_values,
                20,
            )
        ),
    }
    release_uuid = draw(mostly(st.sampled_from(["r1", "r2"]), st.just("r/3"), 20))
    return {"id": draw(ids), "name": "gen", "releases": {release_uuid: release}}


GOOD_ID = 2**50  # never generated: an id shared by two apps rejects both
GOOD_APP = {
    "id": GOOD_ID,
    "name": "good",
    "releases": {
        "g1": {"id": 1, "services": {"main": {"id": 1, "image_id": 1, "image": "good:1"}}}
    },
}

# --- the chain --------------------------------------------------------------------------------


def build_in_sdk(app: Any, step: Start) -> None:
    """The container spec of a Start step, through the SDK's config builders, as JSON the
    engine can decode (no NaN/inf)."""
    assert app.release is not None
    spec = container_spec(app, step.service, DEVICE, app.release.uuid, app.release.id)
    host_config = SDK.create_host_config(
        **{**spec.host_config, "network_mode": spec.host_config.get("network_mode")}
    )
    networking = None
    if spec.primary_network:
        networking = SDK.create_networking_config(
            {
                spec.primary_network: SDK.create_endpoint_config(
                    **spec.endpoints[spec.primary_network]
                )
            }
        )
    for net in spec.extra_networks:
        SDK.create_endpoint_config(**spec.endpoints[net])  # what connect_container_to_network takes
    SDK.create_container(**spec.create, host_config=host_config, networking_config=networking)


def drive(tgt: TargetState) -> None:
    """Plan and apply against the simulated engine for a few passes, building the container
    spec of every service started; the valid app must come up whatever its neighbours are."""
    current = CurrentState(
        containers=tuple(
            container(f"old-{n}", uuid, "web", app_id=app.id or 99)
            for n, (uuid, app) in enumerate(sorted(tgt.apps.items()))
        ),
        images=(image("old:1"),),
    )
    good_started = False
    for _ in range(6):
        p = plan(current, tgt, PlanContext())
        for uuid, app in tgt.apps.items():
            if app.rejection is not None:
                assert p.apps[uuid].status == UpdateStatus.REJECTED
                assert p.apps[uuid].reason == app.rejection
        for step in p.steps:
            touched = getattr(step, "container", None)
            if touched is not None:  # a rejected app's running containers are left alone
                assert not tgt.apps[touched.app_uuid].rejected, step
            if isinstance(step, Start):
                build_in_sdk(tgt.apps[step.app.uuid], step)
                comp = step.service.composition
                for key in (
                    "ports",
                    "volumes",
                    "healthcheck",
                    "stop_grace_period_s",
                    "sysctls",
                    "ulimits",
                    "nano_cpus",
                    "mem_limit",
                    "endpoints",
                    "security_opt",
                ):
                    if getattr(comp, key):
                        event(f"started with {key}")
                good_started = good_started or step.app.uuid == GOOD_UUID
        if not p.steps:
            break
        current = apply_all(current, p.steps)
    assert good_started, "the valid app never started"


@pytest.mark.timeout(120)  # 200 examples: ~7 s on a quiet machine, over 30 s on a loaded one
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(generated=st.dictionaries(st.sampled_from(["a1", "a2", "a3"]), apps(), max_size=3))
def test_nothing_but_a_rejection_escapes(generated: dict[str, Any]) -> None:
    body = {DEV: {"name": "dev", "config": {}, "apps": {**generated, GOOD_UUID: GOOD_APP}}}
    tgt = parse_target(body, DEV)  # the document itself is sound: never refused whole
    assert tgt.apps[GOOD_UUID].rejection is None
    for uuid, spec in tgt.apps.items():
        if uuid != GOOD_UUID:
            event("app rejected" if spec.rejection else "app accepted")
    drive(tgt)


@settings(max_examples=150, deadline=None)
@given(body=json_values, apps_value=json_values)
def test_broken_documents_are_refused_with_a_target_error(body: Any, apps_value: Any) -> None:
    for doc in (body, {DEV: body}, {DEV: {"apps": apps_value}}, {DEV: {"apps": {"a": body}}}):
        try:
            tgt = parse_target(doc, DEV)
        except TargetStateError:
            continue
        for app in tgt.apps.values():
            assert app.rejection is not None or app.id > 0


HOST_KEYS = [k for k in PLAUSIBLE if k not in ("ports", "volumes", "healthcheck", "depends_on")]


@st.composite
def host_compositions(draw: st.DrawFn) -> dict[str, Any]:
    """Only the resource, kernel, DNS and network keys, plausible values: most apps get through
    to the SDK's builders with several of them set."""
    keys = draw(st.lists(st.sampled_from(HOST_KEYS), min_size=1, max_size=5, unique=True))
    return {key: draw(PLAUSIBLE[key]) for key in keys}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(comps=st.lists(host_compositions(), min_size=1, max_size=3))
def test_host_options_reach_the_sdk_or_reject(comps: list[dict[str, Any]]) -> None:
    generated = {}
    for n, comp in enumerate(comps):
        app = {
            "id": n + 1,
            "name": f"h{n}",
            "releases": {
                f"r{n}": {
                    "id": 1,
                    "services": {
                        "web": {"id": 1, "image_id": 1, "image": "reg/a:1", "composition": comp},
                        "db": {"id": 2, "image_id": 2, "image": "reg/b:1"},
                    },
                    "networks": {
                        "front": {"ipam": {"config": [{"subnet": "10.5.0.0/16"}]}},
                        "main": {},
                        "data": {},
                    },
                }
            },
        }
        generated[f"h{n}"] = app
    body = {DEV: {"name": "dev", "config": {}, "apps": {**generated, GOOD_UUID: GOOD_APP}}}
    tgt = parse_target(body, DEV)
    for uuid, spec in tgt.apps.items():
        if uuid != GOOD_UUID:
            event("app rejected" if spec.rejection else "app accepted")
    drive(tgt)
