"""The event bus: delivery by payload type, in subscription order, before publish returns; a
handler that raises is logged and neither the publisher nor the other handlers see it."""

import dataclasses
import typing

import pytest
from structlog.testing import capture_logs

from agent.events.bus import Bus
from agent.events.kinds import Event, Payload, PollDone, PullStarted, StatusChanged
from agent.model import UpdateStatus


def test_handlers_get_their_type_only_in_subscription_order_before_publish_returns():
    bus = Bus()
    seen: list[tuple[str, object]] = []
    bus.subscribe(PollDone, lambda e: seen.append(("first", e)))
    bus.subscribe(PullStarted, lambda e: seen.append(("pull", e)))
    bus.subscribe(PollDone, lambda e: seen.append(("second", e)))
    done = PollDone(ok=True, new_target=True)
    bus.publish(done)
    assert seen == [("first", done), ("second", done)]
    bus.publish(PullStarted("img"))
    assert seen[-1] == ("pull", PullStarted("img"))
    bus.publish(StatusChanged())  # nobody listens: nothing happens
    assert len(seen) == 3


def test_a_failing_handler_is_logged_and_breaks_neither_the_publisher_nor_the_others():
    bus = Bus()
    after: list[PollDone] = []

    def broken(_event: PollDone) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(PollDone, broken)
    bus.subscribe(PollDone, after.append)
    with capture_logs() as logs:
        bus.publish(PollDone(ok=False, error="timeout"))  # does not raise
        bus.publish(PollDone(ok=True))
    assert [e.ok for e in after] == [False, True]
    assert bus.failures == 2
    failed = [e for e in logs if e["event"] == "event_handler_failed"]
    assert len(failed) == 2
    assert failed[0]["event_kind"] == "poll_done"
    assert "subscriber bug" in failed[0]["error"]


def test_unsubscribe_stops_delivery_even_from_inside_a_publish():
    bus = Bus()
    seen: list[str] = []
    unsubscribe_second = None

    def first(_e: StatusChanged) -> None:
        seen.append("first")
        assert unsubscribe_second is not None
        unsubscribe_second()  # the running publish still reaches the handlers it started with

    unsubscribe_first = bus.subscribe(StatusChanged, first)
    unsubscribe_second = bus.subscribe(StatusChanged, lambda _e: seen.append("second"))
    bus.publish(StatusChanged())
    assert seen == ["first", "second"]
    bus.publish(StatusChanged())
    assert seen == ["first", "second", "first"]
    unsubscribe_first()
    unsubscribe_first()  # twice is harmless
    bus.publish(StatusChanged())
    assert seen == ["first", "second", "first"]


def test_every_payload_is_frozen_and_names_its_own_event():
    payloads = typing.get_args(Payload)
    assert len(payloads) == len(Event)
    assert {p.EVENT for p in payloads} == set(Event)  # one payload per event, none left out
    for payload in payloads:
        assert dataclasses.is_dataclass(payload)
        assert getattr(payload, "__dataclass_params__").frozen  # noqa: B009
    with pytest.raises(dataclasses.FrozenInstanceError):
        PollDone(ok=True).ok = False  # type: ignore[misc]


def test_the_board_publishes_each_step_of_a_skipped_chain_once_it_shows_it(tmp_path):
    from agent.events.kinds import UpdateStatusChanged
    from agent.status.board import StatusBoard
    from agent.store import Store

    bus = Bus()
    board = StatusBoard(Store(tmp_path), bus, clock=lambda: 5.0)
    board.ensure_app("a1", 1, "web", "r1")
    steps: list[tuple[UpdateStatus | None, UpdateStatus, UpdateStatus | None]] = []
    changed: list[StatusChanged] = []

    def on_step(e: UpdateStatusChanged) -> None:
        view = board.app("a1")
        steps.append((e.previous, e.status, view.update_status if view else None))

    bus.subscribe(UpdateStatusChanged, on_step)
    bus.subscribe(StatusChanged, changed.append)
    board.set_update_status("a1", "r1", UpdateStatus.DOWNLOADING)
    board.set_update_status("a1", "r1", UpdateStatus.APPLYING_CHANGES)  # downloaded skipped
    D, DL, A = UpdateStatus.DOWNLOADING, UpdateStatus.DOWNLOADED, UpdateStatus.APPLYING_CHANGES
    # every step published in order, each after the board already shows the new status
    assert steps == [(None, D, D), (D, DL, A), (DL, A, A)]
    assert len(changed) == 2
