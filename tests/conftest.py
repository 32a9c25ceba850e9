"""Fixtures that start the real parts (see testbed/): a private dockerd, a docker-registry and
a throttling proxy in front of it. They are started once per session, in short /tmp/da-*
directories, and removed at the end. A missing or broken part fails the test — never skips."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testbed import PrivateEngine, Registry, TestbedError, ThrottledProxy
from testbed._util import remove_tree
from tests.helpers import SUPERVISED_LABEL, remove_labelled

_INTEGRATION_FIXTURES = {"engine", "docker_client", "registry", "slow_registry", "clean_engine"}
# Session parts that exist so far; the autouse _heal_testbed fixture puts them back in shape.
_LIVE: dict[str, PrivateEngine | Registry | ThrottledProxy] = {}


# Under pytest-xdist (scripts/test -n N) the slowest tests go first, so the short ones fill the
# workers' last minutes instead of one long test running alone at the end: the modules whose
# tests took 30-100 s each in a measured run (scripts/test --durations), then the other real-
# part suites, then the unit tests.
_FIRST = (
    "tests/emulation/",
    "tests/integration/test_api_schema.py",
    "tests/integration/test_update_windows.py",
    "tests/integration/test_connectivity.py",
    "tests/integration/test_cloud_logs.py",
    "tests/integration/test_local_mode.py",
    "tests/integration/test_sdnotify_agent.py",
    "tests/faults/",
    "tests/integration/",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid
    return next((i for i, prefix in enumerate(_FIRST) if path.startswith(prefix)), len(_FIRST))


def _shares_fixtures_beyond_the_test(item: pytest.Item) -> bool:
    """True if a module- or class-scoped fixture serves this test: its module's tests then
    stay on one xdist worker (--dist loadgroup), which sets that fixture up once."""
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    return any(d.scope in ("module", "class", "package") for fds in defs.values() for d in fds)


# pytest-timeout: 30 s a test (pyproject.toml) unless marked `@pytest.mark.timeout(s)`. The
# integration and fault suites are marked here as a whole: their tests deploy releases through
# a throttled registry onto a real engine, and a worker's first test also starts its engine,
# registry and devcloud and publishes the test images. The emulation suite marks its own.
REAL_PARTS_TIMEOUT_S = 300
_REAL_PARTS = ("tests/integration/", "tests/faults/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if item.nodeid.startswith(_REAL_PARTS) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(REAL_PARTS_TIMEOUT_S))
        if not item.get_closest_marker("xdist_group") and _shares_fixtures_beyond_the_test(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    items.sort(key=_rank)  # stable: the order within each suite is kept


def _short_tmp(prefix: str) -> Path:
    # Unix socket paths must stay < 100 chars: never use pytest's long tmp_path here.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _start_or_fail(part: str, thing: PrivateEngine | Registry, root: Path) -> None:
    """Start `thing`; if it cannot start, clean up and FAIL (never skip) the requesting test."""
    try:
        thing.start()
        return
    except TestbedError as exc:
        error = exc
    thing.purge()
    remove_tree(root)
    pytest.fail(f"testbed: {part} is unavailable — {error}", pytrace=False)


@pytest.fixture(scope="session")
def engine() -> Iterator[PrivateEngine]:
    """A private dockerd (own data-root/exec-root/socket, --bridge=none --iptables=false)."""
    root = _short_tmp("da-e-")
    eng = PrivateEngine(root)
    _start_or_fail("the Docker engine", eng, root)
    _LIVE["engine"] = eng
    try:
        yield eng
    finally:
        _LIVE.pop("engine", None)
        eng.purge()


@pytest.fixture(scope="session")
def docker_client(engine: PrivateEngine) -> Iterator[docker.DockerClient]:
    client = engine.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A docker-registry on 127.0.0.1 (restartable on the same port and storage)."""
    root = _short_tmp("da-r-")
    reg = Registry(root)
    _start_or_fail("the registry", reg, root)
    _LIVE["registry"] = reg
    try:
        yield reg
    finally:
        _LIVE.pop("registry", None)
        reg.purge()


@pytest.fixture(scope="session")
def slow_registry(registry: Registry) -> Iterator[ThrottledProxy]:
    """A ThrottledProxy in front of `registry`; unlimited and uncut at the start of every
    test (set_rate/cut are undone after each test)."""
    proxy = ThrottledProxy(registry).start()
    _LIVE["slow_registry"] = proxy
    try:
        yield proxy
    finally:
        _LIVE.pop("slow_registry", None)
        proxy.stop()


@pytest.fixture
def clean_engine(
    engine: PrivateEngine, docker_client: docker.DockerClient
) -> Iterator[docker.DockerClient]:
    """The engine's client, with every container/network/volume labelled
    io.balena.supervised force-removed before and after the test."""
    remove_labelled(docker_client, SUPERVISED_LABEL)
    yield docker_client
    if not engine.is_running():  # a fault test left it down
        engine.start()
    remove_labelled(docker_client, SUPERVISED_LABEL)


@pytest.fixture(autouse=True)
def _heal_testbed() -> Iterator[None]:
    """After each test: restart parts a test stopped, lift throttling and cuts."""
    yield
    proxy = _LIVE.get("slow_registry")
    if isinstance(proxy, ThrottledProxy):
        proxy.restore()
        proxy.set_rate(None)
    for part in (_LIVE.get("engine"), _LIVE.get("registry")):
        if isinstance(part, PrivateEngine | Registry) and not part.is_running():
            part.stop()  # reap a half-dead process before starting again
            part.start()
