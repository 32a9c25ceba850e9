import random

from agent.cloud.client import TargetFetch, parse_retry_after
from agent.cloud.poller import Poller
from agent.errors import CloudError
from agent.status.board import StatusBoard
from agent.store import Store


class FakeClient:
    def __init__(self, answers):
        self.answers = list(answers)
        self.etags = []

    async def fetch_target(self, etag):
        self.etags.append(etag)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(tmp_path, answers, accept=lambda body, source: True, interval=100.0):
    store = Store(tmp_path)
    board = StatusBoard(store)
    client = FakeClient(answers)
    poller = Poller(client, store, board, accept, lambda: interval, rng=random.Random(0))  # type: ignore[arg-type]
    return poller, client, board, store


async def test_etag_and_target_persist_and_304_is_a_heartbeat(tmp_path):
    poller, client, board, store = make(
        tmp_path, [TargetFetch(True, '"e1"', {"x": 1}), TargetFetch(False, '"e1"')]
    )
    delay = await poller.poll_once()
    assert 100 <= delay <= 110
    assert store.get("target") == {"etag": '"e1"', "body": {"x": 1}}
    first = board.last_poll
    await poller.poll_once()
    assert client.etags == [None, '"e1"']
    assert board.last_poll >= first
    # after a restart the etag is reused: no refetch of the body
    p2, c2, _, _ = make(tmp_path, [TargetFetch(False, '"e1"')])
    saved = p2.load_saved()
    assert saved.body == {"x": 1}
    await p2.poll_once()
    assert c2.etags == ['"e1"']


async def test_failures_back_off_capped_at_interval_and_honor_retry_after(tmp_path):
    errors = [CloudError("down") for _ in range(6)] + [CloudError("busy", 503, retry_after=90)]
    poller, _, board, _ = make(tmp_path, errors, interval=60.0)
    delays = [(await poller.poll_once()) for _ in range(6)]
    assert delays[0] <= 15
    assert max(delays) <= 60
    assert board.last_poll is None and board.last_poll_error == "down"
    assert (await poller.poll_once()) == 90


async def test_rejected_target_is_not_persisted(tmp_path):
    poller, _, _, store = make(
        tmp_path, [TargetFetch(True, '"bad"', [1])], accept=lambda b, s: False
    )
    await poller.poll_once()
    assert store.get("target") is None and poller.etag is None


def test_retry_after_parsing():
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
