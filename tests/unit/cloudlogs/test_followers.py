"""A follower's line filter (agent/cloudlogs/followers.py): lines at or before where the
stream was opened are skipped (read before); past it, a line stamped earlier than one already
read is still new — the engine copies stdout and stderr apart, so `seq=80` on stdout can come
after `err=80` on stderr with an earlier time (CI lost such lines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.cloudlogs import followers as followers_module
from agent.cloudlogs.buffer import LogBuffer
from agent.cloudlogs.followers import Followers
from agent.cloudlogs.ratelimit import RateLimiter
from agent.engine.logwire import LogFrame
from tests.unit.reconcile.factories import container

SINCE = 1_000


def frames() -> list[LogFrame]:
    return [
        LogFrame(SINCE, False, "seq=79"),  # at `since`: read before the stream was re-opened
        LogFrame(SINCE + 30, True, "err=80"),  # stderr written first, stamped later
        LogFrame(SINCE + 20, False, "seq=80"),
        LogFrame(SINCE + 40, False, "seq=81"),
    ]


async def test_lines_out_of_time_order_past_since_are_kept_and_the_position_is_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def fake_log_frames(*_args: Any, **_kwargs: Any) -> AsyncIterator[list[LogFrame]]:
        yield frames()

    monkeypatch.setattr(followers_module, "log_frames", fake_log_frames)
    c = container("c1", "a1", "main")

    buffer = LogBuffer(1 << 20, 0, None)
    limiter = RateLimiter(1000, 1000)
    followers = Followers(None, buffer, limiter, {c.id: SINCE}, 0)  # type: ignore[arg-type]
    await followers._follow(c, SINCE)
    taken = await buffer.take(1 << 20)
    lines, position = [e.line.decode() for e in taken], followers.last[c.id]
    messages = [m for m in ("err=80", "seq=80", "seq=81", "seq=79") if any(m in x for x in lines)]
    assert messages == ["err=80", "seq=80", "seq=81"]
    assert position == SINCE + 40
