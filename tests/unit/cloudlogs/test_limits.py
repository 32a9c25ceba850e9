"""The per-service rate limiter and the reconnect backoff (the system messages' wording:
test_system.py)."""

from __future__ import annotations

from agent.cloudlogs.ratelimit import RateLimiter
from agent.cloudlogs.sender import MAX_COOLDOWN_S, cooldown


def test_a_flood_is_capped_per_service_and_counted():
    limiter = RateLimiter(rate=100, burst=200, notice_every_s=1.0)
    now = 1000.0
    allowed = sum(limiter.allow("flood", now + i / 10_000, i) for i in range(10_000))  # 1 s
    assert 200 <= allowed <= 310  # the burst plus one second at the rate
    assert all(limiter.allow("quiet", now + 1, 0) for _ in range(50))  # others unaffected
    dropped, first_ms, last_ms = limiter.notice("flood", now + 1.0) or (0, 0, 0)
    assert dropped == 10_000 - allowed and first_ms < last_ms
    assert limiter.notice("flood", now + 1.5) is None  # at most once a second
    assert limiter.pending() == []


def test_reconnect_waits_grow_from_5_s_to_5_min_with_jitter():
    assert cooldown(0) == 0
    assert cooldown(1, lambda: 1.0) == 5.0
    assert cooldown(1, lambda: 0.0) == 2.5
    assert cooldown(3, lambda: 1.0) == 20.0
    assert cooldown(30, lambda: 1.0) == MAX_COOLDOWN_S
