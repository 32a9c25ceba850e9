"""Feature labels → mounts, variables and device requests, as balena's supervisor grants them
(either label spelling), and what is left out when the host lacks it."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.features import (
    HOST_PATHS,
    HostFacts,
    features,
    normalize_labels,
    read_host_facts,
)

ALL_PATHS = frozenset(HOST_PATHS)
HOST = HostFacts(
    existing_paths=ALL_PATHS,
    engine_host="unix:///run/engine.sock",
    board_rev="rev-7",
    os_version="balenaOS 6.0.0",
    gpu=True,
)
BARE = HostFacts(engine_host="tcp://10.0.0.1:2375")  # nothing on the host


def run(label: str, host: HostFacts = HOST, value: str = "1", **kw):
    return features(
        {label: value}, host, api_endpoint="https://api.example", device_api_key="KEY", **kw
    )


def legacy(label: str) -> str:
    """The io.resin.* spelling balena fleets of old still use."""
    return label.replace("balena", "resin")


# label -> (binds, env, env defaults, device requests) on a host that has everything
EXPECTED = {
    "io.balena.features.journal-logs": (
        [
            "/var/log/journal:/var/log/journal:ro",
            "/run/log/journal:/run/log/journal:ro",
            "/etc/machine-id:/etc/machine-id:ro",
        ],
        {},
        {},
        0,
    ),
    "io.balena.features.dbus": (["/run/dbus:/host/run/dbus"], {}, {}, 0),
    "io.balena.features.kernel-modules": (["/lib/modules:/lib/modules"], {}, {}, 0),
    "io.balena.features.firmware": (["/lib/firmware:/lib/firmware"], {}, {}, 0),
    "io.balena.features.sysfs": (["/sys:/sys"], {}, {}, 0),
    "io.balena.features.procfs": (["/proc:/proc"], {}, {}, 0),
    "io.balena.features.balena-socket": (
        [
            "/run/engine.sock:/host/run/balena-engine.sock",
            "/run/engine.sock:/var/run/docker.sock",
            "/run/engine.sock:/var/run/balena.sock",
        ],
        {},
        {"DOCKER_HOST": "unix:///host/run/balena-engine.sock"},
        0,
    ),
    "io.balena.features.balena-api": (
        [],
        {
            "BALENA_API_KEY": "KEY",
            "RESIN_API_KEY": "KEY",
            "BALENA_API_URL": "https://api.example",
            "RESIN_API_URL": "https://api.example",
        },
        {},
        0,
    ),
    "io.balena.features.gpu": ([], {}, {}, 1),
    "io.balena.features.host-os.board-rev": (
        [],
        {
            "BALENA_HOST_OS_BOARD_REV": "rev-7",
            "RESIN_HOST_OS_BOARD_REV": "rev-7",
            "BALENA_HOST_OS_BUILD": "rev-7",
            "RESIN_HOST_OS_BUILD": "rev-7",
        },
        {},
        0,
    ),
    "io.balena.features.extra-firmware": (["extra-firmware:/extra-firmware"], {}, {}, 0),
}

# label -> what the log names when the host has nothing
LEFT_OUT_ON_BARE_HOST = {
    "io.balena.features.journal-logs": ["/var/log/journal", "/run/log/journal", "/etc/machine-id"],
    "io.balena.features.dbus": ["/run/dbus"],
    "io.balena.features.kernel-modules": ["/lib/modules"],
    "io.balena.features.firmware": ["/lib/firmware"],
    "io.balena.features.sysfs": ["/sys"],
    "io.balena.features.procfs": ["/proc"],
    "io.balena.features.balena-socket": ["not on a unix socket"],
    "io.balena.features.gpu": ["nvidia-container-runtime-hook"],
    "io.balena.features.host-os.board-rev": ["BALENA_BOARD_REV"],
}


@pytest.mark.parametrize("spelling", ["balena", "resin"])
@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_each_label_grants_what_the_reference_grants(label, spelling):
    name = label if spelling == "balena" else legacy(label)
    got = run(name)
    binds, env, env_defaults, requests = EXPECTED[label]
    assert list(got.binds) == binds
    assert dict(got.env) == env
    assert dict(got.env_defaults) == env_defaults
    assert len(got.device_requests) == requests
    assert got.left_out == ()


def test_resin_spellings_of_balena_named_features():
    assert legacy("io.balena.features.balena-api") == "io.resin.features.resin-api"
    assert run("io.resin.features.resin-api").env["BALENA_API_KEY"] == "KEY"
    assert len(run("io.resin.features.resin-socket").binds) == 3


def test_gpu_device_request_is_the_engine_clis():
    (request,) = run("io.balena.features.gpu").device_requests
    assert request == {
        "driver": "",
        "count": 1,
        "device_ids": [],
        "capabilities": [["gpu"]],
        "options": {},
    }


@pytest.mark.parametrize("label", sorted(LEFT_OUT_ON_BARE_HOST))
def test_a_host_lacking_what_a_label_needs_leaves_it_out_and_says_so(label):
    got = run(label, BARE)
    assert got.binds == () and not got.env and got.device_requests == ()
    assert len(got.left_out) == len(LEFT_OUT_ON_BARE_HOST[label])
    for line, what in zip(got.left_out, LEFT_OUT_ON_BARE_HOST[label], strict=True):
        assert line.startswith(label + ": ") and what in line


def test_only_the_missing_journal_paths_are_left_out():
    host = HostFacts(existing_paths=frozenset({"/etc/machine-id", "/var/log/journal"}))
    got = run("io.balena.features.journal-logs", host)
    assert got.binds == (
        "/var/log/journal:/var/log/journal:ro",
        "/etc/machine-id:/etc/machine-id:ro",
    )
    assert got.left_out == ("io.balena.features.journal-logs: /run/log/journal (not on the host)",)


def test_labels_that_need_nothing_from_the_host_work_on_a_bare_host():
    assert run("io.balena.features.balena-api", BARE).env["RESIN_API_URL"] == "https://api.example"
    assert run("io.balena.features.extra-firmware", BARE).binds == (
        "extra-firmware:/extra-firmware",
    )


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "on", "On"])
def test_truthy_values(value):
    assert run("io.balena.features.sysfs", value=value).binds == ("/sys:/sys",)


@pytest.mark.parametrize("value", ["0", "false", "off", "", "yes", " 1"])
def test_other_values_grant_nothing(value):
    got = run("io.balena.features.sysfs", value=value)
    assert got.binds == () and got.left_out == ()


def test_unknown_feature_is_said_not_silently_dropped():
    got = run("io.balena.features.teleport")
    assert got.binds == () and not got.env
    assert got.left_out == ("io.balena.features.teleport: unknown feature (nothing granted)",)


def test_features_handled_elsewhere_are_not_unknown():
    assert run("io.balena.features.supervisor-api").left_out == ()
    assert run("io.resin.features.optional").left_out == ()


def test_a_path_the_service_mounts_itself_is_left_out():
    got = run("io.balena.features.sysfs", taken_targets=frozenset({"/sys"}))
    assert got.binds == ()
    assert got.left_out == ("io.balena.features.sysfs: /sys (already mounted by the service)",)


def test_normalize_labels_as_the_reference():
    labels = {
        "io.resin.features.resin-api": "1",
        "io.resin.update.strategy": "kill-then-download",
        "io.resin.features.dbus": "0",
        "io.balena.features.dbus": "1",
        "my.resin.label": "x",
    }
    assert normalize_labels(labels) == {
        "io.balena.features.balena-api": "1",
        "io.balena.update.strategy": "kill-then-download",
        "io.balena.features.dbus": "1",  # the io.balena spelling wins
        "my.resin.label": "x",  # only io.resin.* keys are renamed
    }


def test_read_host_facts(tmp_path: Path):
    (tmp_path / "lib/firmware").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("abc\n")
    (tmp_path / "etc/os-release").write_text(
        'ID="balena-os"\nPRETTY_NAME="balenaOS 6.0.0"\nRESIN_BOARD_REV=a1b2c3\nVERSION="6.0.0"\n'
    )
    facts = read_host_facts(tmp_path, "unix:///var/run/balena-engine.sock")
    assert facts.existing_paths == {"/lib/firmware", "/etc/machine-id"}
    assert facts.os_version == "balenaOS 6.0.0"
    assert (facts.os_slug, facts.os_semver) == ("balena-os", "6.0.0")
    assert facts.board_rev == "a1b2c3"
    assert facts.engine_socket == "/var/run/balena-engine.sock"
    bare = read_host_facts(tmp_path / "nothing", "tcp://127.0.0.1:2375")
    assert bare.existing_paths == frozenset() and bare.board_rev is None
    assert bare.os_version == "" and bare.engine_socket is None


@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from(sorted(EXPECTED) + [legacy(k) for k in EXPECTED]),
            st.text(max_size=40).map(lambda s: "io.balena.features." + s),
            st.text(max_size=40),
        ),
        st.text(max_size=8),
        max_size=12,
    ),
    st.sampled_from([HOST, BARE]),
)
def test_any_labels_give_distinct_mount_points_and_never_raise(labels, host):
    got = features(labels, host, api_endpoint="u", device_api_key="k")
    targets = [b.split(":")[1] for b in got.binds]
    assert len(targets) == len(set(targets))
