from agent.model import UpdateStatus as U
from agent.status.board import AppView, StatusBoard, expand_transition
from agent.store import Store


def seen(board: StatusBoard, app_uuid: str) -> AppView:
    view = board.app(app_uuid)
    assert view is not None, f"{app_uuid} is not on the board"
    return view


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        self.t += 1
        return self.t


def test_skipped_stages_are_filled_in():
    assert expand_transition(U.DOWNLOADING, U.APPLYING_CHANGES) == [
        U.DOWNLOADED,
        U.APPLYING_CHANGES,
    ]
    assert expand_transition(U.DOWNLOADING, U.DONE) == [U.DOWNLOADED, U.APPLYING_CHANGES, U.DONE]
    assert expand_transition(None, U.DOWNLOADING) == [U.DOWNLOADING]
    assert expand_transition(U.DONE, U.DOWNLOADING) == [U.DOWNLOADING]
    assert expand_transition(U.DOWNLOADING, U.ABORTED) == [U.ABORTED]


def test_transitions_are_queued_in_order_and_persisted(tmp_path):
    board = StatusBoard(Store(tmp_path), clock=Clock())
    board.ensure_app("a", 1, "app", "r1")
    board.set_update_status("a", "r1", U.DOWNLOADING)
    board.set_update_status("a", "r1", U.DOWNLOADING)  # no-op
    board.set_update_status("a", "r1", U.APPLYING_CHANGES)
    board.set_update_status("a", "r1", U.DONE)
    assert [t.status for t in board.transitions] == [
        U.DOWNLOADING,
        U.DOWNLOADED,
        U.APPLYING_CHANGES,
        U.DONE,
    ]
    view = board.app("a")
    assert view is not None and view.current_release_uuid == "r1"
    since = view.since
    again = StatusBoard(Store(tmp_path), clock=Clock())
    assert seen(again, "a").update_status is U.DONE
    assert seen(again, "a").since == since


def test_new_release_keeps_reporting_the_current_one_until_done(tmp_path):
    board = StatusBoard(Store(tmp_path), clock=Clock())
    board.ensure_app("a", 1, "app", "r1")
    board.set_update_status("a", "r1", U.DONE)
    board.set_update_status("a", "r2", U.DOWNLOADING)
    assert seen(board, "a").current_release_uuid == "r1"
    assert seen(board, "a").release_uuid == "r2"
    board.set_update_status("a", "r2", U.DONE)
    assert seen(board, "a").current_release_uuid == "r2"
    # a new release starts its own chain: nothing carried over from the old release's `done`
    r2 = [t.status for t in board.transitions if t.release_uuid == "r2"]
    assert r2 == [U.DOWNLOADING, U.DOWNLOADED, U.APPLYING_CHANGES, U.DONE]
