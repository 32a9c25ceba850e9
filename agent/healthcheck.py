"""Is the agent stuck? The answer behind `GET /v1/healthy` (and a container's HEALTHCHECK).

As in the reference supervisor, two loops are checked:

- the poll loop: a target-state request must have been *attempted* within two poll intervals
  plus one request timeout (an attempt, not a success: an offline device keeps trying and is
  healthy; restarting it would not bring the network back);
- the apply loop: a pass that has been running for more than two poll intervals (at least
  `MIN_APPLY_BUSY_S`) is stuck, unless images are being downloaded (a slow download is not a
  hang; the reference also leaves download time out); and with a target in hand the loop must
  have begun a pass within `APPLY_IDLE_LIMIT_S` (twice its longest wait: the converged
  recheck, `RECHECK_S`).

And first: every long-lived task runs (agent/supervise.py), none was given up.

Everything is passed in, so the rules are tested without a clock or an agent; `HealthCheck`
reads the inputs off the running parts (small Protocols, wired by agent/daemon.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

from agent.model import TargetState
from agent.model.update_status import UpdateStatus
from agent.reconcile.loop import RECHECK_S
from agent.status.board import AppView

MIN_APPLY_BUSY_S = 300.0  # a pass without downloads may take this long whatever the interval
# the loop passes at least every RECHECK_S (300 s; backoff cap 60 s)
APPLY_IDLE_LIMIT_S = 2 * RECHECK_S


def loop_health(
    now: float,
    *,
    last_poll_attempt: float | None,
    poll_interval_s: float,
    request_timeout_s: float,
    last_apply_pass: float | None,
    apply_busy_since: float | None,
    has_target: bool,
    downloading: bool,
) -> tuple[bool, str]:
    """(healthy, reason). All times are unix seconds. `last_poll_attempt` None means no poll has
    started yet (the poller starts at once, and a dead poll task is caught by the task check)."""
    if last_poll_attempt is not None:
        poll_limit = 2 * poll_interval_s + request_timeout_s
        since = now - last_poll_attempt
        if since > poll_limit:
            return False, f"poll loop stuck: no attempt for {since:.0f}s (limit {poll_limit:.0f}s)"
    if apply_busy_since is not None and not downloading:
        busy_limit = max(2 * poll_interval_s, MIN_APPLY_BUSY_S)
        busy = now - apply_busy_since
        if busy > busy_limit:
            return False, f"apply loop stuck: one pass running for {busy:.0f}s"
    elif apply_busy_since is None and has_target and last_apply_pass is not None:
        idle = now - last_apply_pass
        if idle > APPLY_IDLE_LIMIT_S:
            return False, f"apply loop stuck: no pass for {idle:.0f}s"
    return True, "ok"


REQUIRED_TASKS = frozenset({"reconcile", "poll", "report"})


class Tasks(Protocol):
    """The task supervisor (agent/supervise.py)."""

    @property
    def given_up(self) -> Mapping[str, str]: ...
    def names(self) -> set[str]: ...


class PollTimes(Protocol):
    @property
    def last_attempt_at(self) -> float | None: ...


class ApplyTimes(Protocol):
    @property
    def last_pass_at(self) -> float | None: ...
    @property
    def busy_since(self) -> float | None: ...
    @property
    def target(self) -> TargetState | None: ...


class AppStatuses(Protocol):
    @property
    def apps(self) -> Mapping[str, AppView]: ...


class HealthCheck:
    """`GET /v1/healthy`'s answer for the running agent: (healthy, reason)."""

    def __init__(
        self,
        tasks: Tasks,
        poller: PollTimes,
        apply: ApplyTimes,
        status: AppStatuses,
        poll_interval_s: Callable[[], float],
        request_timeout_s: float,
    ) -> None:
        self._tasks = tasks
        self._poller = poller
        self._apply = apply
        self._status = status
        self._poll_interval_s = poll_interval_s
        self._request_timeout_s = request_timeout_s

    def __call__(self, now: float | None = None) -> tuple[bool, str]:
        given_up = self._tasks.given_up
        if given_up:
            why = "; ".join(f"{n} {r}" for n, r in sorted(given_up.items()))
            return False, f"task given up: {why}"
        missing = REQUIRED_TASKS - self._tasks.names()
        if missing:
            return False, f"not running: {', '.join(sorted(missing))}"
        downloading = any(
            app.update_status == UpdateStatus.DOWNLOADING for app in self._status.apps.values()
        )
        return loop_health(
            time.time() if now is None else now,
            last_poll_attempt=self._poller.last_attempt_at,
            poll_interval_s=self._poll_interval_s(),
            request_timeout_s=self._request_timeout_s,
            last_apply_pass=self._apply.last_pass_at,
            apply_busy_since=self._apply.busy_since,
            has_target=self._apply.target is not None,
            downloading=downloading,
        )
