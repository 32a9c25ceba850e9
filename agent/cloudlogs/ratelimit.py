"""Per-service token bucket: a service that writes faster than `rate` lines a second (beyond a
burst) has the excess dropped and counted; `notice` says how many once per `notice_every_s`,
so a flood costs the agent a counter, not memory or bandwidth."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float
    dropped: int = 0
    first_ms: int = 0
    last_ms: int = 0
    noticed_at: float = 0.0


class RateLimiter:
    def __init__(self, rate: float, burst: float, notice_every_s: float = 1.0) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.notice_every_s = notice_every_s
        self._buckets: dict[str, _Bucket] = {}
        self.dropped_total = 0

    def allow(self, key: str, now: float, ts_ms: int) -> bool:
        if self.admit(key, now, 1):
            return True
        self.dropped(key, 1, ts_ms, ts_ms)
        return False

    def admit(self, key: str, now: float, lines: int) -> int:
        """How many of `lines` read at `now` pass (the first ones: a line takes a token); the
        caller tells `dropped` about the rest."""
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        passed = min(lines, int(b.tokens))
        b.tokens -= passed
        return passed

    def dropped(self, key: str, lines: int, first_ms: int, last_ms: int) -> None:
        b = self._buckets[key]
        if not b.dropped:
            b.first_ms = first_ms
        b.dropped += lines
        b.last_ms = last_ms
        self.dropped_total += lines

    def notice(self, key: str, now: float) -> tuple[int, int, int] | None:
        """(lines dropped, first ms, last ms) since the last notice, at most once per
        `notice_every_s` per service; None when there is nothing (yet) to say."""
        b = self._buckets.get(key)
        if b is None or not b.dropped or now - b.noticed_at < self.notice_every_s:
            return None
        out = (b.dropped, b.first_ms, b.last_ms)
        b.dropped = 0
        b.noticed_at = now
        return out

    def pending(self) -> list[str]:
        return [k for k, b in self._buckets.items() if b.dropped]

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)
