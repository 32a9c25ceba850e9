"""The log stream's encoder and gzip framing: what the cloud decodes is what was written."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.cloudlogs.wire import (
    MAX_MESSAGE_CHARS,
    GzipStream,
    container_entries,
    encode,
    system_entry,
)
from agent.engine.logwire import (
    ChunkDecoder,
    FrameSplitter,
    LogFrame,
    demux,
    parse_stamp,
    since_param,
    split_frames,
    utc_seconds,
)


def test_a_container_line_has_the_reference_keys_and_no_others():
    line = encode("hello", 1700000000123, service_id=7)
    assert line.endswith(b"\n")
    assert json.loads(line) == {"message": "hello", "timestamp": 1700000000123, "serviceId": 7}
    err = json.loads(encode("oops", 1, service_id=7, stderr=True))
    assert err["isStdErr"] is True


def test_a_system_line_is_marked_and_has_no_service():
    obj = json.loads(system_entry("Killing service 'main'", 5, error=True).line)
    assert obj == {
        "message": "Killing service 'main'",
        "timestamp": 5,
        "isSystem": True,
        "isStdErr": True,
    }


def test_a_long_message_is_cut_with_the_reference_omission():
    obj = json.loads(encode("x" * (MAX_MESSAGE_CHARS + 50), 1, service_id=1))
    assert len(obj["message"]) == MAX_MESSAGE_CHARS
    assert obj["message"].endswith("[...]")
    assert json.loads(encode("é" * 10, 1, service_id=1))["message"] == "é" * 10


def test_every_flushed_batch_decodes_before_the_member_ends():
    gz = GzipStream()
    inflate = zlib.decompressobj(wbits=47)
    first = [encode(f"line {i}", i, service_id=1) for i in range(100)]
    assert inflate.decompress(gz.batch(first)) == b"".join(first)  # sync-flushed
    second = [encode("more", 1, service_id=2)]
    assert inflate.decompress(gz.batch(second) + gz.end()) == second[0]
    assert inflate.eof
    assert gz.raw_bytes == sum(map(len, first + second))
    assert gz.wire_bytes < gz.raw_bytes / 4  # repetitive log lines compress well


def test_engine_stamps_keep_nanoseconds_and_since_round_trips():
    ns = parse_stamp(b"2024-05-01T10:00:00.123456789Z")
    assert ns == 1714557600_123456789
    assert since_param(ns) == "1714557600.123456789"
    assert parse_stamp(b"2024-05-01T10:00:00Z") == 1714557600_000000000
    assert parse_stamp(b"garbage") is None


def test_frames_are_split_into_lines_per_stream_even_across_frames():
    chunks = [
        (False, b"2024-05-01T10:00:00.000000001Z out one\n2024-05-01T10:00:00.000000002Z out"),
        (True, b"2024-05-01T10:00:00.000000003Z err one\n"),
        (False, b" two\n"),
    ]
    assert list(split_frames(iter(chunks))) == [
        LogFrame(1714557600_000000001, False, "out one"),
        LogFrame(1714557600_000000003, True, "err one"),
        LogFrame(1714557600_000000002, False, "out two"),
    ]


def test_multiplexed_frames_are_demuxed_whatever_the_read_boundaries():
    def frame(kind: int, text: bytes) -> bytes:
        return bytes([kind, 0, 0, 0]) + len(text).to_bytes(4, "big") + text

    wire = (
        frame(1, b"2024-05-01T10:00:00.000000001Z a\n")
        + frame(2, b"2024-05-01T10:00:00.000000002Z b\n")
        + frame(1, b"2024-05-01T10:00:00.000000003Z c")
        + frame(1, b"c\n")
    )
    for cut in range(1, len(wire)):  # every split of the stream into two reads
        buf, splitter, out = bytearray(), FrameSplitter(), list[Any]()
        for piece in (wire[:cut], wire[cut:]):
            buf += piece
            demux(buf, splitter, out)
        assert [(f.text, f.stderr) for f in out] == [("a", False), ("b", True), ("cc", False)]
        assert not buf


def test_chunked_encoding_is_decoded_whatever_the_read_boundaries():
    body = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    for cut in range(1, len(body)):
        dec = ChunkDecoder()
        got = dec.feed(body[:cut]) + dec.feed(body[cut:])
        assert got == b"hello world!" and dec.done
    dec = ChunkDecoder()  # a byte at a time
    assert b"".join(dec.feed(body[i : i + 1]) for i in range(len(body))) == b"hello world!"
    assert dec.done


def test_the_hand_written_encoder_is_valid_json_for_awkward_text():
    awkward = ['a"b\\c', "tab\there", "\x00\x1f\x7f", "é ü 漢字 🙂", "\u2028\u2029", "\ud800", ""]
    for text in awkward:
        obj = json.loads(encode(text, 7, service_id=3, stderr=True))
        assert obj["serviceId"] == 3 and obj["isStdErr"] is True and obj["timestamp"] == 7
        assert obj["message"] == text.encode(errors="replace").decode() or text == "\ud800"


def test_a_batch_of_container_lines_is_written_as_encode_writes_each_line():
    texts = ["hello", 'a"b\\c', "tab\there", "é ü 漢字 🙂", "", "x" * (MAX_MESSAGE_CHARS + 5)]
    frames = [LogFrame(1714557600_123456789 + i, i % 2 == 1, t) for i, t in enumerate(texts)]
    for service_id in (7, None):
        entries = container_entries(frames, "main", "c1", service_id)
        assert [e.line for e in entries] == [
            encode(f.text, f.ns // 1_000_000, service_id=service_id, stderr=f.stderr)
            for f in frames
        ]
        assert [(e.key, e.container, e.ns, e.ts_ms) for e in entries] == [
            ("main", "c1", f.ns, f.ns // 1_000_000) for f in frames
        ]


def test_the_engine_stamp_fast_path_reads_what_the_general_parser_reads():
    stamps = [
        b"2024-05-01T10:00:00.000000001Z",  # a second not seen before: the general parser
        b"2024-05-01T10:00:00.999999999Z",  # the same second: the fast path
        b"2024-05-01T10:00:01.5Z",  # RFC 3339 with its zeros trimmed: the general parser
        b"2024-05-01T10:00:01.000000042Z",
    ]
    data = b"".join(s + b" msg " + str(i).encode() + b"\r\n" for i, s in enumerate(stamps))
    out: list[LogFrame] = []
    FrameSplitter().feed(True, data + b"not a stamp\n", out)
    assert out == [
        LogFrame(parse_stamp(s), True, f"msg {i}")  # type: ignore[arg-type]
        for i, s in enumerate(stamps)
    ]


def test_utc_seconds_are_the_calendars():
    start = datetime(1970, 1, 1, tzinfo=UTC)
    for days in range(0, 60_000, 7):  # 1970 to 2134, leap years and centuries included
        for seconds in (0, 86_399):
            when = start + timedelta(days=days, seconds=seconds)
            head = when.strftime("%Y-%m-%dT%H:%M:%S").encode()
            assert utc_seconds(head) == int(when.timestamp()), head
    for bad in (b"2024-13-01T00:00:00", b"2024-05-01 10:00:00", b"2024-05-01T10:00:0x", b"1"):
        assert utc_seconds(bad) is None
