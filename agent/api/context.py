"""Host actions the API runs after the answer is sent (reboot, shutdown, the LED). What the
handlers read and do otherwise is their `ApiContext` (agent/api/ports.py)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from aiohttp import web

from agent.host import HostAction, HostControl

log = structlog.get_logger("agent.api")

LED = Path("/sys/class/leds/led0/brightness")
BLINK_S = 15.0
HOST_ACTION_DELAY_S = 1.0  # let the 202 reach the caller before the host goes down


class HostActions:
    def __init__(self, host: HostControl, led: Path = LED) -> None:
        self._host = host
        self._led = led
        self._tasks: set[asyncio.Task[None]] = set()

    def perform_later(self, action: HostAction) -> None:
        log.info("host_action_requested", action=action)
        self._spawn(self._perform(action))

    async def _perform(self, action: HostAction) -> None:
        await asyncio.sleep(HOST_ACTION_DELAY_S)
        try:
            await self._host.perform(action)
        except Exception as exc:
            log.error("host_action_failed", action=action, error=str(exc))
        else:
            log.info("host_action_done", action=action)

    async def blink(self) -> bool:
        """Blink the LED for 15 s (in the background); False when there is none."""
        if not self._led.exists():
            return False
        self._spawn(self._blink())
        return True

    async def _blink(self) -> None:
        with contextlib.suppress(OSError):
            for i in range(int(BLINK_S / 0.25)):
                await asyncio.to_thread(self._led.write_text, "1" if i % 2 == 0 else "0")
                await asyncio.sleep(0.25)
            await asyncio.to_thread(self._led.write_text, "0")

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


HOST: web.AppKey[HostActions] = web.AppKey("host")
