"""The positions file: what was put is there after a reopen (as after a SIGKILL), gone
containers free their slots, and a file of the wrong size or kind starts afresh."""

from __future__ import annotations

from pathlib import Path

from agent.cloudlogs.positions import SIZE, Positions


def test_positions_survive_a_reopen_and_gone_containers_are_dropped(tmp_path: Path):
    path = tmp_path / "cloud-logs.pos"
    first = Positions.open(path, now_ns=111)
    assert first.started_ns == 111 and first.values == {}
    first.put("a" * 64, 1_700_000_000_000_000_001)
    first.put("b" * 64, 5)
    first.put("a" * 64, 1_700_000_000_000_000_002)
    again = Positions.open(path, now_ns=999)  # another process, the first never closed
    assert again.started_ns == 111
    assert again.values == {"a" * 64: 1_700_000_000_000_000_002, "b" * 64: 5}
    again.keep_only({"b" * 64})
    assert Positions.open(path, now_ns=999).values == {"b" * 64: 5}


def test_a_file_that_is_not_ours_starts_afresh(tmp_path: Path):
    path = tmp_path / "cloud-logs.pos"
    path.write_bytes(b"garbage")
    fresh = Positions.open(path, now_ns=42)
    assert fresh.values == {} and fresh.started_ns == 42
    assert path.stat().st_size == SIZE
    path.write_bytes(b"x" * SIZE)
    assert Positions.open(path, now_ns=43).started_ns == 43
