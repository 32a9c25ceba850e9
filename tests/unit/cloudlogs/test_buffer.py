"""The bounded buffer: order kept through the spill, the bounds hold, and every loss is told
in one system line per service with its time span."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from agent.cloudlogs.buffer import LogBuffer
from agent.cloudlogs.wire import Entry, encode


def entry(i: int, key: str = "main", size: int = 100) -> Entry:
    line = encode(f"{i:06d} " + "x" * size, 1_700_000_000_000 + i, service_id=1)
    return Entry(line, key, 1_700_000_000_000 + i, "c1", i)


def numbers(entries: list[Entry]) -> list[int]:
    return [int(json.loads(e.line)["message"][:6]) for e in entries]


def files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


async def drain(buf: LogBuffer) -> list[Entry]:
    out: list[Entry] = []
    while batch := await buf.take(4096):
        out += batch
    return out


async def test_lines_come_out_in_order_through_memory_and_spill(tmp_path: Path):
    buf = LogBuffer(mem_bytes=8 * 1024, disk_bytes=1024 * 1024, spill_dir=tmp_path)
    for i in range(1000):
        buf.put(entry(i))
        if i % 50 == 0:
            await buf.spill()
    await buf.spill()
    assert buf.spilled_bytes > 0 and files(tmp_path)
    assert buf.memory_bytes <= 2 * 8 * 1024
    got = await drain(buf)
    assert numbers(got) == list(range(1000))
    assert buf.take_drop_notice() is None
    await buf.spill()
    assert not files(tmp_path), "read segments are deleted"


async def test_the_disk_bound_drops_the_oldest_and_says_so_per_service(tmp_path: Path):
    buf = LogBuffer(mem_bytes=4 * 1024, disk_bytes=200 * 1024, spill_dir=tmp_path)
    for i in range(5000):
        buf.put(entry(i, key="main" if i % 2 else "aux"))
        if i % 20 == 0:
            await buf.spill()
    await buf.spill()
    assert buf.spilled_bytes <= 200 * 1024
    notice = buf.take_drop_notice()
    assert notice is not None
    message = json.loads(notice.line)["message"]
    assert json.loads(notice.line)["isSystem"] is True
    got = numbers(await drain(buf))
    assert got == sorted(got) and got[-1] == 4999  # the newest are kept, in order
    dropped = 5000 - len(got)
    assert message.startswith(f"Dropped {dropped} log line(s)")
    assert "service 'aux'" in message and "service 'main'" in message
    assert " from " in message and " UTC" in message


async def test_without_a_spill_dir_memory_is_the_bound(tmp_path: Path):
    buf = LogBuffer(mem_bytes=4096, disk_bytes=0, spill_dir=tmp_path)
    for i in range(1000):
        buf.put(entry(i))
    assert buf.memory_bytes <= 4096
    got = numbers(await drain(buf))
    assert got[-1] == 999
    notice = buf.take_drop_notice()
    assert notice is not None and f"Dropped {1000 - len(got)} " in notice.line.decode()


async def test_a_take_cancelled_while_reading_a_segment_loses_nothing(tmp_path: Path):
    buf = LogBuffer(mem_bytes=2048, disk_bytes=1024 * 1024, spill_dir=tmp_path)
    for i in range(200):
        buf.put(entry(i))
        if i % 10 == 0:
            await buf.spill()
    assert buf.spilled_bytes
    for _ in range(5):  # cancelled in the lock or while a segment is read back
        task = asyncio.ensure_future(buf.take(4096))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            buf.requeue(await task)  # it finished first: as a failed request would
    assert numbers(await drain(buf)) == list(range(200))
    assert buf.take_drop_notice() is None


async def test_a_failed_request_puts_its_lines_back_first(tmp_path: Path):
    buf = LogBuffer(mem_bytes=64 * 1024, disk_bytes=0, spill_dir=None)
    for i in range(10):
        buf.put(entry(i))
    first = await buf.take(2 * len(entry(0).line))
    assert numbers(first) == [0, 1]
    buf.put(entry(10))
    buf.requeue(first)
    assert numbers(await drain(buf)) == list(range(11))
    assert not buf.ready.is_set()


async def test_a_batch_put_keeps_the_bound_and_the_order_of_lines_put_one_by_one(tmp_path: Path):
    one, batch = LogBuffer(4096, 0, None), LogBuffer(4096, 0, None)
    entries = [entry(i) for i in range(100)]
    for e in entries:
        one.put(e)
    for k in range(0, 100, 30):
        batch.put_all(entries[k : k + 30])
    assert batch.memory_bytes == one.memory_bytes <= 4096
    assert numbers(await drain(batch)) == numbers(await drain(one))
    a, b = batch.take_drop_notice(), one.take_drop_notice()
    assert (
        a is not None
        and b is not None
        and json.loads(a.line)["message"] == json.loads(b.line)["message"].replace("\n", "")
    )


async def test_take_now_leaves_a_segment_on_disk_to_take(tmp_path: Path):
    buf = LogBuffer(mem_bytes=2048, disk_bytes=1 << 20, spill_dir=tmp_path)
    for i in range(60):
        buf.put(entry(i))
        await buf.spill()  # past the memory bound: the oldest to disk
    segments, waited, got = len(files(tmp_path)), 0, list[Entry]()
    assert segments >= 2
    while buf.pending:
        batch = buf.take_now(1 << 20)
        if batch is None:  # the oldest lines are on disk: take() reads them, with a wait
            waited += 1
            batch = await buf.take(1 << 20)
        got += batch
    assert numbers(got) == list(range(60))
    assert waited == segments  # memory needed no wait
