"""Test hooks, installed into an agent process by `python -m testbed.agent_main` (the entry
point AgentProcess uses when $DEVICE_AGENT_TEST_HOOKS=1); nothing under agent/ imports this.

Deterministic crash points for the fault suite (tests/faults).

Off unless $DEVICE_AGENT_TEST_HOOKS=1 and $DEVICE_AGENT_TEST_CRASH_AT="<point>:<n>": the agent
then SIGKILLs itself the n-th time it reaches <point> — a power cut at an exact moment. A point
is either a log event name (`pull_started`, `step_done`, `update_status_changed`, …; counted
when the event is logged, before it is written out) or a state write, reached between the
fsynced temp file and its rename over the old value: `state_write` (any key) or
`state_write.<key>` (e.g. `state_write.status`). Just before dying it writes one line to
stderr, `{"event": "test_hook_crash", "point": …, "n": …}`, so a test can tell the crash came
from the hook and where. With the hooks off, `reached` is a dict lookup and nothing is
installed in the log chain.

`$DEVICE_AGENT_TEST_RAISE_AT="<point>:<n>"` (with the hooks on) instead raises `TestHookError`
(a RuntimeError, not an AgentError) the n-th time <point> is reached, once: an unexpected bug at
an exact place, to show that no long-lived task dies of it (tests/faults/test_task_faults.py).
`"<point>:<n>+"` raises every time from the n-th on: a task that can't be mended, given up
(tests/integration/test_sdnotify_agent.py).

SIGUSR2 blocks the agent's event loop for $DEVICE_AGENT_TEST_BLOCK_S seconds (default 30), so
a test can watch the WATCHDOG pings stop (tests/integration/test_sdnotify_agent.py).

The agent's seams they use: `agent.store.BEFORE_REPLACE` (called with the key between a state
write's fsynced temp file and its rename) and `agent.logs.EXTRA_PROCESSORS` (structlog
processors run on every event before it is written).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import MutableMapping
from typing import Any

HOOKS_ENV = "DEVICE_AGENT_TEST_HOOKS"
CRASH_ENV = "DEVICE_AGENT_TEST_CRASH_AT"
RAISE_ENV = "DEVICE_AGENT_TEST_RAISE_AT"


class TestHookError(RuntimeError):
    """Raised by the raise hook: an unexpected error (no AgentError) at an exact point."""


def _parse(environ: MutableMapping[str, str], name: str = CRASH_ENV) -> tuple[str, int] | None:
    if environ.get(HOOKS_ENV) != "1":
        return None
    point, sep, n = environ.get(name, "").rpartition(":")
    n = n.removesuffix("+") if name == RAISE_ENV else n  # raise hook: "<n>+", from n on
    if not sep or not point or not n.isdigit() or int(n) < 1:
        return None
    return point, int(n)


_CRASH_AT = _parse(os.environ)
_RAISE_AT = _parse(os.environ, RAISE_ENV)
_RAISE_ON = os.environ.get(RAISE_ENV, "").endswith("+")  # every arrival from the n-th on
_counts: dict[str, int] = {}
_raise_counts: dict[str, int] = {}


def enabled() -> bool:
    return _CRASH_AT is not None or _RAISE_AT is not None


def reached(point: str) -> None:
    """Count one arrival at `point`; SIGKILL this process if it is the configured one, or
    raise TestHookError from the code that got there (the raise hook)."""
    if _RAISE_AT is not None and point == _RAISE_AT[0]:
        _raise_counts[point] = _raise_counts.get(point, 0) + 1
        if _raise_counts[point] == _RAISE_AT[1] or (
            _RAISE_ON and _raise_counts[point] > _RAISE_AT[1]
        ):
            raise TestHookError(f"test hook: raised at {point}:{_RAISE_AT[1]}")
    if _CRASH_AT is None or point != _CRASH_AT[0]:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == _CRASH_AT[1]:
        from agent import logs

        logs.flush()  # the lines logged before the crash point are in the log, in order
        line = json.dumps({"event": "test_hook_crash", "point": point, "n": _CRASH_AT[1]})
        os.write(2, line.encode() + b"\n")
        os.kill(os.getpid(), signal.SIGKILL)


def crash_processor(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: a log event is a crash point."""
    reached(str(event.get("event")))
    return event


def _state_write(key: str) -> None:
    reached("state_write")
    reached(f"state_write.{key}")


def block_the_loop() -> None:
    """Block the event loop this runs on (a loop callback) for $DEVICE_AGENT_TEST_BLOCK_S."""
    import structlog

    log = structlog.get_logger("testbed.testhooks")
    seconds = float(os.environ.get("DEVICE_AGENT_TEST_BLOCK_S", "30"))
    log.warning("test_hook_blocking_loop", seconds=seconds)
    time.sleep(seconds)  # deliberately blocking: that is the test
    log.warning("test_hook_loop_unblocked")


def _on_sigusr2(_signum: int, _frame: object) -> None:
    # a signal handler runs in the main thread, the loop's: hand the block to the loop as a
    # callback, as the agent's own work runs
    loop = asyncio._get_running_loop()
    if loop is not None:
        loop.call_soon_threadsafe(block_the_loop)


def install() -> None:
    """Hook what $DEVICE_AGENT_TEST_HOOKS=1 and its companions ask for into this process's
    agent, before it starts. Off (nothing installed) without $DEVICE_AGENT_TEST_HOOKS=1."""
    if os.environ.get(HOOKS_ENV) != "1":
        return
    from agent import logs, store

    if enabled():
        logs.EXTRA_PROCESSORS.append(crash_processor)
        store.BEFORE_REPLACE.append(_state_write)
    signal.signal(signal.SIGUSR2, _on_sigusr2)
