"""Decisions made in one place (issue 15 point 5): the update strategy of a service, the
settled update statuses and a service's best container. Pure logic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.model import ContainerState, ContainerStatus, ServiceSpec, UpdateStatus
from agent.model.current import best_by_service, rank_containers
from agent.model.target import UpdateStrategy
from agent.model.update_status import FAILED, IN_PROGRESS, SETTLED
from tests.unit.reconcile.factories import container


def service(labels: dict[str, str]) -> ServiceSpec:
    return ServiceSpec(name="web", id=1, image_id=1, image="web:1", labels=labels)


def test_strategy_labels_keep_their_wire_spelling():
    assert [s.value for s in UpdateStrategy] == [
        "download-then-kill",
        "kill-then-download",
        "delete-then-download",
        "hand-over",
    ]
    for s in UpdateStrategy:
        assert service({"io.balena.update.strategy": s.value}).update_strategy is s
        assert service({"io.resin.update.strategy": s.value}).update_strategy is s


@given(st.text(max_size=30))
def test_an_unknown_or_missing_strategy_is_download_then_kill(value):
    got = service({"io.balena.update.strategy": value}).update_strategy
    if value in {s.value for s in UpdateStrategy}:
        assert got.value == value
    else:
        assert got is UpdateStrategy.DOWNLOAD_THEN_KILL
    assert service({}).update_strategy is UpdateStrategy.DOWNLOAD_THEN_KILL


def test_settled_and_in_progress_split_every_status():
    assert frozenset(UpdateStatus) == SETTLED | IN_PROGRESS
    assert not SETTLED & IN_PROGRESS
    assert {s.value for s in SETTLED} == {"done", "rejected", "aborted"}
    assert {s.value for s in IN_PROGRESS} == {"downloading", "downloaded", "applying changes"}
    assert SETTLED - {UpdateStatus.DONE} == FAILED
    # log events carry the wire strings: they test as members too
    assert "applying changes" in IN_PROGRESS and "done" in SETTLED


def box(cid: str, service_name: str, running: bool, created: int, config: str) -> ContainerState:
    status = ContainerStatus.RUNNING if running else ContainerStatus.EXITED
    return container(
        cid, "app", service_name, release_uuid="r", release_id=1, image_ref="web:1",
        config_hash=config, status=status, created_at=f"{created:010d}",
    )  # fmt: skip


boxes = st.lists(
    st.builds(
        box,
        cid=st.sampled_from(["c1", "c2", "c3", "c4", "c5"]),
        service_name=st.sampled_from(["web", "db"]),
        running=st.booleans(),
        created=st.integers(1_700_000_000, 1_700_000_005),
        config=st.sampled_from(["a", "b"]),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda c: c.id,
)


@given(boxes, st.sampled_from(["a", "b", None]))
def test_the_best_container_is_wanted_then_running_then_newest_then_lowest_id(containers, want):
    ranked = rank_containers(containers, want)
    assert sorted(ranked, key=lambda c: c.id) == sorted(containers, key=lambda c: c.id)

    def key(c: ContainerState) -> tuple[bool, bool, int, str]:
        return (want is not None and c.config_hash != want, not c.running, -int(c.created_at), c.id)

    assert [key(c) for c in ranked] == sorted(key(c) for c in containers)
    # the order doesn't depend on the order the engine listed them in
    assert rank_containers(list(reversed(containers)), want) == ranked


@given(boxes)
def test_the_api_and_the_planner_pick_the_same_container(containers):
    """The API acts on (and reports) the container the planner would keep, whatever config."""
    best = best_by_service(containers)
    assert set(best) == {c.service_name for c in containers}
    for name, chosen in best.items():
        mine = [c for c in containers if c.service_name == name]
        assert chosen == rank_containers(mine)[0]
        # running beats stopped, then the newest: the API's rule before it was shared
        assert chosen.running == any(c.running for c in mine)
        assert chosen.created_at == max(c.created_at for c in mine if c.running == chosen.running)


def test_the_device_is_updating_exactly_while_an_update_is_in_progress(tmp_path):
    from agent.status.board import AppView, StatusBoard
    from agent.store import Store

    board = StatusBoard(Store(tmp_path))
    for status in [None, *UpdateStatus]:
        board.apps = {"app": AppView("app", 1, "main", "r2", "r1", status, since=0.0)}
        expected = "Updating" if status in IN_PROGRESS else "Idle"
        assert board.overall_status() == expected, status
