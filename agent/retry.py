"""Retry policy, defined once: exponential backoff with jitter, a cap, and Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float
    retry_after_cap_s: float = 6 * 3600.0

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Delay before retry number `attempt` (1-based): base·2^(n-1), capped, with jitter
        drawn from the upper half so retries never bunch at zero. A server's Retry-After
        (seconds) wins when it is longer."""
        rng = rng or random.Random()
        exp = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        delay = rng.uniform(exp / 2, exp)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap_s))
        return delay


def poll_jitter(interval_s: float, rng: random.Random | None = None) -> float:
    """Random extra wait for a poll: 0 to min(60 s, 10 % of the interval)."""
    rng = rng or random.Random()
    return rng.uniform(0.0, min(60.0, interval_s * 0.1))
