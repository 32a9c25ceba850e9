import pytest

from agent.engine.pull import PullProgress
from agent.errors import PullError


def test_progress_over_two_layers():
    p = PullProgress()
    assert p.feed({"status": "Pulling from app", "id": "v1"}) is None
    p.feed({"status": "Pulling fs layer", "id": "a"})
    p.feed({"status": "Pulling fs layer", "id": "b"})
    first = {"status": "Downloading", "id": "a", "progressDetail": {"current": 50, "total": 100}}
    assert p.feed(first) == 50  # b's size is not known yet
    p.feed({"status": "Downloading", "id": "b", "progressDetail": {"current": 50, "total": 100}})
    assert p.percent == 50
    p.feed({"status": "Download complete", "id": "a"})
    assert p.percent == 75
    p.feed({"status": "Pull complete", "id": "b"})
    assert p.percent == 100
    assert p.bytes_downloaded == 200


def test_never_reports_100_while_a_layer_is_pending():
    p = PullProgress()
    p.feed({"status": "Pulling fs layer", "id": "a"})
    p.feed({"status": "Downloading", "id": "b", "progressDetail": {"current": 100, "total": 100}})
    assert p.percent == 99


def test_already_present_layers_count_as_done():
    p = PullProgress()
    p.feed({"status": "Already exists", "id": "a"})
    assert p.percent == 100


def test_error_event_raises():
    with pytest.raises(PullError, match="manifest unknown"):
        PullProgress().feed({"error": "manifest unknown", "errorDetail": {"message": "x"}})
