"""The engine's `die` events keep each supervised container's latest exit code: once the engine
has restarted the container, its inspect says ExitCode 0 and the probation watch would report a
crash loop as "(exit 0)"."""

from __future__ import annotations

from typing import Any

from agent.engine.docker import DockerEngine


def event(action: str, cid: str, **attrs: str) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "id": cid,
        "Actor": {"ID": cid, "Attributes": attrs},
    }


def test_die_events_keep_the_latest_exit_code_until_the_container_is_destroyed() -> None:
    engine = DockerEngine("unix:///nonexistent.sock")
    assert engine.last_exit_code("c1") is None
    engine._note_exit("die", event("die", "c1", exitCode="1", name="main_1_1_r2"))
    engine._note_exit("die", event("die", "c2", exitCode="137"))
    assert engine.last_exit_code("c1") == 1 and engine.last_exit_code("c2") == 137
    engine._note_exit("die", event("die", "c1", exitCode="3"))
    assert engine.last_exit_code("c1") == 3
    engine._note_exit("oom", event("oom", "c1"))
    assert engine.last_exit_code("c1") == 3
    engine._note_exit("destroy", event("destroy", "c1"))
    assert engine.last_exit_code("c1") is None and engine.last_exit_code("c2") == 137


def test_a_die_event_without_a_usable_exit_code_changes_nothing() -> None:
    engine = DockerEngine("unix:///nonexistent.sock")
    engine._note_exit("die", event("die", "c1", exitCode="2"))
    engine._note_exit("die", event("die", "c1"))
    engine._note_exit("die", event("die", "c1", exitCode="x"))
    assert engine.last_exit_code("c1") == 2
