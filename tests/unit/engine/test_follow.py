"""The thread bridge of followed engine streams (logs, events): a consumer that lags holds the
reader back instead of the whole stream piling up in memory."""

import asyncio
import threading
import time

from agent.engine import docker as engine_docker


class FakeStream:
    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0
        self.closed = threading.Event()

    def __iter__(self):
        for i in range(self.count):
            if self.closed.is_set():
                return
            self.read += 1
            yield i

    def close(self) -> None:
        self.closed.set()


async def test_a_lagging_consumer_holds_the_reader_back_and_gets_everything_in_order():
    stream = FakeStream(20_000)

    follow = engine_docker._follow("t", "test", lambda: stream, iter)
    assert await follow.__anext__() == 0
    await asyncio.sleep(0.5)  # the consumer lags; the reader may only run ahead so far
    assert stream.read <= engine_docker.FOLLOW_BUFFER + 2
    got = [0] + [item async for item in follow]
    assert got == list(range(20_000))


async def test_a_consumer_that_leaves_stops_the_reader():
    stream = FakeStream(10**9)

    follow = engine_docker._follow("t", "test", lambda: stream, iter)
    await follow.__anext__()
    await follow.aclose()
    deadline = time.monotonic() + 3
    while any(t.name == "t" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the reader thread is still there"
        await asyncio.sleep(0.05)
    assert stream.closed.is_set() and stream.read < 10_000
