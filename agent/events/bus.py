"""The in-process event bus: `publish(payload)` hands the payload to every handler subscribed
to its type, in the order they subscribed, before it returns.

Handlers are plain functions that must not block: they count, remember or set an
`asyncio.Event` for a task of their own to act on. A handler that raises is logged
(`event_handler_failed`) and skipped; the publisher and the other handlers never see it.
Publish from the event loop's thread (a worker thread hands its news over with
`loop.call_soon_threadsafe`): handlers run where `publish` is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from agent.events.kinds import Payload

log = structlog.get_logger("agent.events")

P = TypeVar("P", bound=Payload)
Handler = Callable[[Any], None]


class Bus:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = {}
        self.failures = 0  # handlers that raised, since start

    def subscribe(self, kind: type[P], handler: Callable[[P], None]) -> Callable[[], None]:
        """Call `handler(payload)` for every published `kind`; returns the unsubscribe."""
        handlers = self._handlers.setdefault(kind, [])
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def publish(self, payload: Payload) -> None:
        for handler in tuple(self._handlers.get(type(payload), ())):
            try:
                handler(payload)
            except Exception as exc:  # one subscriber's bug stays its own
                self.failures += 1
                log.error(
                    "event_handler_failed",
                    event_kind=payload.EVENT.value,
                    handler=getattr(handler, "__qualname__", repr(handler)),
                    error=repr(exc),
                    exc_info=True,
                )
