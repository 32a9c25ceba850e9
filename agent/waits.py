"""`wait_for`: asyncio.wait_for without its Python 3.11 flaw.

On 3.11, `asyncio.wait_for` swallows a cancel that arrives just as the awaited thing finishes
(the event set, the read returned): it returns the result and the task goes on "cancelling" —
a loop cancelled at shutdown the moment it was woken kept running, and a drain waited for it
until its grace ran out. `asyncio.timeout` keeps the two apart (3.12's wait_for is built on it).
Same signature and the same TimeoutError, so it is a drop-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`await awaitable`, raising TimeoutError after `timeout` s (None: no bound)."""
    async with asyncio.timeout(timeout):
        return await awaitable
