"""The rate limiter takes a follower's batch (the lines of a tick) at once."""

from __future__ import annotations

from agent.cloudlogs.ratelimit import RateLimiter


def test_a_batch_is_admitted_as_its_lines_would_be_one_by_one():
    by_line, by_batch = RateLimiter(rate=50, burst=20), RateLimiter(rate=50, burst=20)
    now = 1000.0
    for step, size in enumerate([5, 30, 1, 40, 0, 12, 60]):
        now += 0.25 * step
        stamps = list(range(step * 100, step * 100 + size))
        passed = sum(by_line.allow("svc", now, ts) for ts in stamps)
        assert by_batch.admit("svc", now, size) == passed
        if passed < size:
            by_batch.dropped("svc", size - passed, stamps[passed], stamps[-1])
    assert by_batch.dropped_total == by_line.dropped_total > 0
    assert by_batch.notice("svc", now + 5) == by_line.notice("svc", now + 5)
