"""LogStream: the engine's followed log body (chunked, multiplexed) read in one pass gives the
same lines as the layers one by one (ChunkDecoder, demux, FrameSplitter), whatever the reads."""

from __future__ import annotations

import random

import pytest

from agent.engine import logwire
from agent.engine.logwire import ChunkDecoder, FrameSplitter, LogFrame, LogStream, demux


def frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def stamped(second: int, ns: int, text: bytes) -> bytes:
    return b"2026-12-05T00:%02d:%02d.%09dZ " % (second // 60, second % 60, ns) + text + b"\n"


def layered(body: bytes, tty: bool = False) -> list[LogFrame]:
    dec, splitter, buf, out = ChunkDecoder(), FrameSplitter(), bytearray(), list[LogFrame]()
    data = dec.feed(body)
    if tty:
        splitter.feed(False, data, out)
    else:
        buf += data
        demux(buf, splitter, out)
    return out + splitter.rest()


def streamed(body: bytes, cuts: list[int], tty: bool = False) -> tuple[list[LogFrame], bool]:
    stream, out = LogStream(True, tty), list[LogFrame]()
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        stream.feed(body[start:cut], out)
        start = cut
    return out + stream.rest(), stream.done


def usual(n: int, second: int = 0) -> bytes:
    texts = [b"GET /api/v1/items/%d 200 %dms" % (i, i % 97) for i in range(n)]
    return b"".join(
        chunk(frame(1 + i % 3 // 2, stamped(second + i // 20, i, t))) for i, t in enumerate(texts)
    )


AWKWARD = [
    b"plain",
    b"",
    b"crlf line\r",
    b'quote " and \\ backslash',
    "é 漢字 🙂".encode(),
    b"\xff\xfe not utf-8",
    b"tab\there",
    b"x" * 20_000,
]


def awkward_parts() -> list[bytes]:
    parts = [chunk(frame(1 + i % 2, stamped(i, i, t))) for i, t in enumerate(AWKWARD)]
    long = stamped(40, 1, b"y" * 100)
    parts.append(chunk(frame(1, long[:50])) + chunk(frame(1, long[50:])))  # a line over frames
    parts.append(chunk(frame(2, stamped(41, 2, b"a") + stamped(41, 3, b"b"))))  # a frame, 2 lines
    parts.append(chunk(frame(1, stamped(42, 4, b"c")) + frame(2, stamped(42, 5, b"d"))))
    pair = frame(1, stamped(43, 6, b"split chunk"))
    parts.append(chunk(pair[:20]) + chunk(pair[20:]))  # a frame over chunks
    two = frame(2, stamped(43, 7, b"e") + stamped(43, 8, b"f"))
    parts.append(chunk(two[: 8 + 33]) + chunk(two[8 + 33 :]))  # chunk ends where a line does
    parts.append(chunk(frame(1, b"2026-12-05T00:00:44Z short stamp\n")))
    upper = frame(1, stamped(45, 7, b"upper-case hex size: %s" % (b"z" * 200)))
    parts.append(b"%X\r\n" % len(upper) + upper + b"\r\n")
    parts.append(chunk(frame(1, stamped(46, 8, b"after"))))
    return [usual(30), *parts, usual(30, second=50), b"0\r\n\r\n"]


def test_the_usual_shape_is_read_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    body = usual(200)
    expected = layered(body)
    calls: list[int] = []
    monkeypatch.setattr(LogStream, "_layers", lambda *_a: calls.append(1))
    got, _ = streamed(body, [])
    assert got == expected and len(got) == 200
    assert not calls  # no line went through the layers
    assert {f.stderr for f in got} == {False, True}


def test_every_shape_gives_the_layers_lines_whatever_the_reads() -> None:
    parts = awkward_parts()
    body = b"".join(parts)
    expected = layered(body)
    bounds = [sum(map(len, parts[:i])) for i in range(1, len(parts))]
    assert streamed(body, bounds) == (expected, True)  # each part starts clean: one pass first
    assert len(expected) == 60 + len(AWKWARD) + 11  # the short stamp is a line too
    assert [f.text for f in expected[30:32]] == ["plain", ""]
    rand = random.Random(13)
    for _ in range(300):
        cuts = rand.sample(range(1, len(body)), rand.randint(0, 12))
        got, done = streamed(body, cuts)
        assert got == expected, cuts
        assert done


def test_a_new_second_mid_stream_and_a_cleared_cache() -> None:
    logwire._NS_CACHE.clear()
    logwire._SECONDS_CACHE.clear()
    body = usual(200, second=7)  # 10 seconds, none cached
    assert streamed(body, [len(body) // 3])[0] == layered(body)


def test_the_chunk_count_counts_lines_on_both_paths() -> None:
    body = usual(10) + chunk(frame(1, stamped(1, 1, b"y" * 100)[:40])) + usual(5)
    stream, out = LogStream(True, False), list[LogFrame]()
    stream.feed(body, out)
    assert stream.count == 16


def test_tty_and_unchunked_bodies_use_the_layers() -> None:
    lines = stamped(0, 1, b"one") + stamped(0, 2, b"two\r")
    stream, out = LogStream(True, True), list[LogFrame]()
    stream.feed(chunk(lines) + b"0\r\n\r\n", out)
    assert [f.text for f in out] == ["one", "two"] and stream.done
    stream, out = LogStream(False, False), list[LogFrame]()
    stream.feed(frame(2, lines), out)
    assert [(f.text, f.stderr) for f in out] == [("one", True), ("two", True)]
