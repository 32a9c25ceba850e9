"""The agent's own lines in /v2/local/logs, from its bus events: "<what>: key=value ..." as
they read when they were made from the agent's log events (agent/api/syslines.py), and the
log hub hearing the bus only while someone reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.api.loghub import LogHub, Subscriber
from agent.api.syslines import KINDS, local_line
from agent.events.kinds import (
    AppActionTaken,
    ImageDownloaded,
    Payload,
    PullFailed,
    PullStarted,
    ServiceActionTaken,
    StepDone,
    StepFailed,
    StepStarted,
    TargetAccepted,
    UpdateLockHeld,
    UpdateStatusChanged,
)
from agent.model.update_status import UpdateStatus as U
from agent.reconcile.steps import StepKind as K
from tests.unit.api.fakes import fake_context

IMG = "reg.test/app@sha256:1"
KILL = ("kill main_11_1_r1", "main_11_1_r1", "main", "sha256:ab12")

TABLE: list[tuple[Payload, str | None]] = [
    (
        TargetAccepted("cloud", ("aux", "demo")),
        "target state accepted: source=cloud apps=['aux', 'demo']",
    ),
    (
        UpdateStatusChanged("u1", "r1", U.DOWNLOADING, None, 5.25, "demo"),
        "update status: app=demo app_uuid=u1 release=r1 previous=None status=downloading"
        " since=5.25 reason=None",
    ),
    (
        UpdateStatusChanged("u1", "r2", U.DONE, U.APPLYING_CHANGES, 7.5, "demo", "why"),
        "update status: app=demo app_uuid=u1 release=r2 previous=applying changes status=done"
        " since=7.5 reason=why",
    ),
    (PullStarted(IMG, ("main", "aux")), f"downloading image: image={IMG} services=['main', 'aux']"),
    (
        ImageDownloaded(IMG, "sha256:" + "b" * 64),
        f"downloaded image: image={IMG} image_id=sha256:bbbbbbbbbbbb",
    ),
    (PullFailed(IMG, "manifest unknown"), f"download failed: image={IMG} error=manifest unknown"),
    (StepStarted(K.KILL, *KILL), "step=kill main_11_1_r1 kind=kill service=main image=sha256:ab12"),
    (
        StepStarted(K.START, "start demo/main", "main", None, None),
        "step=start demo/main kind=start",
    ),
    (
        StepFailed(K.KILL, *KILL, error="boom"),
        "failed: step=kill main_11_1_r1 kind=kill error=boom service=main image=sha256:ab12",
    ),
    (StepDone(K.KILL, *KILL), None),
    (
        AppActionTaken("purge", 1, "demo", True),
        "app action: action=purge app_id=1 app=demo force=True",
    ),
    (ServiceActionTaken("stop", 1, "main"), "service action: action=stop app_id=1 service=main"),
    (UpdateLockHeld(1, "aux", "/tmp/x/updates.lock"), None),
]


@pytest.mark.parametrize(("event", "line"), TABLE, ids=lambda v: type(v).__name__)
def test_agent_events_read_as_before(event: Payload, line: str | None) -> None:
    assert local_line(event) == line


def test_the_hub_hears_every_event_that_makes_a_line_and_only_those() -> None:
    assert {type(event) for event, line in TABLE if line is not None} == set(KINDS)


async def test_a_reader_gets_the_agent_lines_published_while_it_reads(tmp_path: Path) -> None:
    ctx = fake_context(tmp_path)
    hub = LogHub(ctx)
    ctx.bus.publish(PullStarted(IMG, ("main",)))  # nobody reads yet: no line kept for later
    agent_lines, services_only = (
        Subscriber(lambda _c: True, True),
        Subscriber(lambda _c: True, False),
    )
    hub.subscribe(agent_lines)
    hub.subscribe(services_only)
    ctx.bus.publish(ServiceActionTaken("restart", 1, "main"))
    ctx.bus.publish(StepDone(K.KILL, *KILL))  # no line for it
    (line,) = [json.loads(x) for x in (await agent_lines.next_batch()).splitlines()]
    assert line["message"] == "service action: action=restart app_id=1 service=main"
    assert line["isSystem"] is True and isinstance(line["timestamp"], int)
    hub.unsubscribe(services_only)
    hub.unsubscribe(agent_lines)
    assert not services_only._lines  # a client reading its services only gets no agent line
    late = Subscriber(lambda _c: True, True)
    ctx.bus.publish(ServiceActionTaken("stop", 1, "main"))  # the hub stopped listening
    hub.subscribe(late)
    ctx.bus.publish(ServiceActionTaken("start", 1, "main"))
    (line,) = [json.loads(x) for x in (await late.next_batch()).splitlines()]
    assert line["message"] == "service action: action=start app_id=1 service=main"
    await hub.close()
