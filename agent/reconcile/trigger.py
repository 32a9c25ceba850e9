"""The instant-update trigger (`POST /v1/update`): poll the cloud now and run the apply loop
again; with `cancel`, the apply in flight is abandoned first (its pulls stop), as the
reference does; with `force`, a rolled back release may be applied again and the update window
is overridden."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("agent.reconcile")


class _ApplyLoop(Protocol):
    def cancel_apply(self) -> bool: ...
    def request_apply(self, force: bool) -> None: ...


class _Rollback(Protocol):
    def force(self) -> None: ...


class UpdateTrigger:
    def __init__(
        self,
        loop: _ApplyLoop,
        rollback: _Rollback,
        poll_now: Callable[[], None],
        instant: Callable[[], bool],
    ) -> None:
        """`poll_now`: the poller's trigger; `instant`: SUPERVISOR_INSTANT_UPDATE_TRIGGER."""
        self._loop = loop
        self._rollback = rollback
        self._poll_now = poll_now
        self._instant = instant

    def request(self, force: bool = False, cancel: bool = False) -> bool:
        """False (ignored, nothing cancelled) when instant updates are off and the request is
        not forced."""
        if not force and not self._instant():
            return False
        log.info("update_requested", force=force, cancel=cancel)
        if force:
            self._rollback.force()  # a rolled back release may be applied again
        if cancel:
            self._loop.cancel_apply()
        self._poll_now()
        self._loop.request_apply(force)
        return True
